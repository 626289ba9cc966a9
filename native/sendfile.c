/*
 * sendfile(2) for Node: the kernel copies file pages to a socket, as nginx sends files, instead of
 * Node reading each byte into a user-space buffer and writing it out again (src/http/sendfile.ts).
 *
 *   sendfile(socketFd, fileFd, offset, count) -> bytes sent (>= 0) or -errno
 *
 * One non-blocking call: the socket is libuv's and stays non-blocking, so a full send buffer
 * returns -EAGAIN at once and the caller lets libuv wait for it. Nothing here blocks, keeps state
 * or owns a descriptor; bad arguments throw a TypeError.
 */
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <sys/sendfile.h>

/* Linux sends at most this much per call anyway (MAX_RW_COUNT). */
#define MAX_COUNT 0x7ffff000LL

static napi_value Sendfile(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) {
    napi_throw_type_error(env, "ERR_SENDFILE_ARGS", "sendfile(socketFd, fileFd, offset, count) takes four numbers");
    return NULL;
  }
  int32_t out = -1, in = -1;
  int64_t offset = -1, count = -1;
  if (napi_get_value_int32(env, argv[0], &out) != napi_ok || napi_get_value_int32(env, argv[1], &in) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok || napi_get_value_int64(env, argv[3], &count) != napi_ok ||
      out < 0 || in < 0 || offset < 0 || count < 0) {
    napi_throw_type_error(env, "ERR_SENDFILE_ARGS", "sendfile(socketFd, fileFd, offset, count) takes four non-negative numbers");
    return NULL;
  }
  if (count > MAX_COUNT) count = MAX_COUNT;
  off_t at = (off_t)offset;
  ssize_t n;
  do {
    n = sendfile(out, in, &at, (size_t)count);
  } while (n < 0 && errno == EINTR);
  napi_value result;
  napi_create_int64(env, n < 0 ? -(int64_t)errno : (int64_t)n, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "sendfile", NAPI_AUTO_LENGTH, Sendfile, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "sendfile", fn) != napi_ok) return NULL;
  return exports;
}
