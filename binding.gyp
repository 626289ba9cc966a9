{
  "targets": [
    {
      "target_name": "netboot_sendfile",
      "sources": ["native/sendfile.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
