#!/bin/sh
# netboot-appliance reference microkernel agent: gather this machine's hardware facts and POST
# them as JSON to $APPLIANCE_URL/api/machines/$MACHINE_MAC/facts.
#
# POSIX sh, busybox-compatible (it also runs in the test VM's busybox initrd). Uses dmidecode,
# lscpu, ip and lsblk where present and falls back to /proc and /sys when they are absent.
#
# Environment:
#   APPLIANCE_URL   base URL of the appliance, e.g. http://10.0.0.1:8080 (set by the cloud-config)
#   MACHINE_MAC     MAC the machine booted from (set by the cloud-config; default: first NIC)
#   FACTS_TOKEN     this boot's facts token (set by the cloud-config, or {{ facts_token }} on the
#                   kernel command line): sent as "Authorization: Bearer"; without it the
#                   appliance keeps the report as unverified (it then matches no fact selector)
#   HOST_PROC HOST_SYS HOST_DEV
#                   where the host's /proc, /sys and /dev are: default /host-proc, /host-sys,
#                   /host-dev when they exist (the microkernel container mounts them there),
#                   else /proc, /sys, /dev
#   DISCOVER_TOOLS  auto (default) or none: none reads only the HOST_* files (tests, tiny images)
#   DISCOVER_ATTEMPTS       POST attempts (default 5)
#   DISCOVER_RETRY_SECONDS  pause between attempts (default 5)
# Usage: discover.sh [--print]     --print writes the JSON to stdout instead of posting it
# Exit status: 0 posted (or printed), 1 every POST attempt failed, 2 usage or configuration.

set -u

PRINT=0
case "${1:-}" in
  --print) PRINT=1 ;;
  '') ;;
  *) echo "usage: discover.sh [--print]" >&2; exit 2 ;;
esac

pick_dir() {
  if [ -n "$1" ]; then echo "$1"; elif [ -d "$2" ]; then echo "$2"; else echo "$3"; fi
}
HOST_PROC=$(pick_dir "${HOST_PROC:-}" /host-proc /proc)
HOST_SYS=$(pick_dir "${HOST_SYS:-}" /host-sys /sys)
HOST_DEV=$(pick_dir "${HOST_DEV:-}" /host-dev /dev)
TOOLS=${DISCOVER_TOOLS:-auto}
case "$TOOLS" in auto | none) ;; *) echo "discover: DISCOVER_TOOLS must be auto or none" >&2; exit 2 ;; esac

# A hardware tool we may use (never in DISCOVER_TOOLS=none mode).
have() {
  [ "$TOOLS" = auto ] && command -v "$1" >/dev/null 2>&1
}

# First line of a file, or nothing (missing or unreadable files are normal: sysfs varies).
first_line() {
  [ -r "$1" ] && head -n 1 "$1" 2>/dev/null
}

# A JSON string literal for $1: one line, control characters dropped, \ and " escaped,
# leading and trailing blanks trimmed. JSON needs nothing else escaped (RFC 8259 §7).
json_str() {
  printf '"%s"' "$(printf '%s' "$1" | tr '\t\r\n' '   ' | tr -d '[:cntrl:]' | sed -e 's/^ *//' -e 's/ *$//' -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

# A JSON string, or null when $1 is empty.
json_str_or_null() {
  if [ -n "$1" ]; then json_str "$1"; else printf 'null'; fi
}

# A JSON non-negative integer, or null when $1 is not one (leading zeros dropped).
json_int() {
  case "$1" in
    '' | *[!0-9]*) printf 'null' ;;
    *) printf '%s' "$1" | sed -e 's/^0*\([0-9]\)/\1/' ;;
  esac
}

# Join the lines of stdin (JSON values) with commas.
join_lines() {
  sed -e '$!s/$/,/' | tr -d '\n'
}

lower() {
  printf '%s' "$1" | tr '[:upper:]' '[:lower:]'
}

# --- kernel, hostname ---------------------------------------------------------------------
kernel_release=$(first_line "$HOST_PROC/sys/kernel/osrelease")
[ -n "$kernel_release" ] || kernel_release=$(uname -r 2>/dev/null)
kernel_arch=$(uname -m 2>/dev/null)
host_name=$(first_line "$HOST_PROC/sys/kernel/hostname")
[ -n "$host_name" ] || host_name=$(hostname 2>/dev/null)

# --- DMI: sysfs first (no tool needed), dmidecode where sysfs says nothing ------------------
# dmidecode falls back to reading SMBIOS from memory; in the container that is $HOST_DEV/mem.
DEV_MEM=
[ "$HOST_DEV" != /dev ] && [ -e "$HOST_DEV/mem" ] && DEV_MEM="--dev-mem $HOST_DEV/mem"
dmi() { # dmi SYSFS_NAME DMIDECODE_KEYWORD
  v=$(first_line "$HOST_SYS/class/dmi/id/$1")
  # shellcheck disable=SC2086 # DEV_MEM is empty or two words on purpose
  if [ -z "$v" ] && have dmidecode; then v=$(dmidecode $DEV_MEM -s "$2" 2>/dev/null | grep -v '^#' | head -n 1); fi
  printf '%s' "$v"
}
uuid=$(lower "$(dmi product_uuid system-uuid)")
case "$uuid" in
  [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-*) ;;
  *) uuid= ;;
esac
dmi_vendor=$(dmi sys_vendor system-manufacturer)
dmi_product=$(dmi product_name system-product-name)
dmi_serial=$(dmi product_serial system-serial-number)
dmi_board_vendor=$(dmi board_vendor baseboard-manufacturer)
dmi_board=$(dmi board_name baseboard-product-name)
dmi_bios=$(dmi bios_version bios-version)

# --- CPU ------------------------------------------------------------------------------------
cpu_model=
cpu_count=
if have lscpu; then
  lscpu_out=$(LC_ALL=C lscpu 2>/dev/null)
  cpu_model=$(printf '%s\n' "$lscpu_out" | sed -n 's/^Model name: *//p' | head -n 1)
  cpu_count=$(printf '%s\n' "$lscpu_out" | sed -n 's/^CPU(s): *//p' | head -n 1)
fi
if [ -r "$HOST_PROC/cpuinfo" ]; then
  # x86 says "model name", arm64 may say nothing useful; take the first that exists.
  [ -n "$cpu_model" ] || cpu_model=$(sed -n -e 's/^model name[[:space:]]*: *//p' -e 's/^Processor[[:space:]]*: *//p' -e 's/^cpu model[[:space:]]*: *//p' "$HOST_PROC/cpuinfo" | head -n 1)
  [ -n "$cpu_count" ] || cpu_count=$(grep -c '^processor' "$HOST_PROC/cpuinfo")
fi

# --- memory ---------------------------------------------------------------------------------
mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB.*/\1/p' "$HOST_PROC/meminfo" 2>/dev/null | head -n 1)

# --- NICs -----------------------------------------------------------------------------------
nic_json() { # nic_json NAME MAC STATE MTU
  physical=false
  [ -e "$HOST_SYS/class/net/$1/device" ] && physical=true
  addrs=
  if have ip; then
    addrs=$(ip -o -4 addr show dev "$1" 2>/dev/null | sed -n 's/.* inet \([0-9.]*\/[0-9]*\).*/\1/p' | while read -r a; do json_str "$a"; echo; done | join_lines)
  fi
  printf '{"name":%s,"mac":%s,"state":%s,"mtu":%s,"physical":%s,"ipv4":[%s]}\n' \
    "$(json_str "$1")" "$(json_str_or_null "$(lower "$2")")" "$(json_str_or_null "$(lower "$3")")" "$(json_int "$4")" "$physical" "$addrs"
}
list_nics() { # lines: NAME MAC STATE MTU
  if have ip; then
    ip -o link show 2>/dev/null | while read -r line; do
      name=$(printf '%s\n' "$line" | sed -n 's/^[0-9]*: *\([^:@ ]*\).*/\1/p')
      mac=$(printf '%s\n' "$line" | sed -n 's/.* link\/ether \([0-9A-Fa-f:]*\).*/\1/p')
      state=$(printf '%s\n' "$line" | sed -n 's/.* state \([A-Za-z]*\).*/\1/p')
      mtu=$(printf '%s\n' "$line" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
      # busybox ip prints no state: sysfs has it.
      [ -n "$state" ] || state=$(first_line "$HOST_SYS/class/net/$name/operstate")
      [ -n "$name" ] && echo "$name ${mac:--} ${state:--} ${mtu:--}"
    done
  else
    for d in "$HOST_SYS"/class/net/*; do
      [ -e "$d" ] || continue
      name=${d##*/}
      mac=$(first_line "$d/address")
      state=$(first_line "$d/operstate")
      mtu=$(first_line "$d/mtu")
      echo "$name ${mac:--} ${state:--} ${mtu:--}"
    done
  fi
}
nics_tmp=$(list_nics)
nics=$(printf '%s\n' "$nics_tmp" | while read -r name mac state mtu; do
  [ -n "$name" ] || continue
  [ "$name" = lo ] && continue
  [ "$mac" = - ] && mac=
  [ "$state" = - ] && state=
  [ "$mtu" = - ] && mtu=
  nic_json "$name" "$mac" "$state" "$mtu"
done | join_lines)
# The default MAC: the first NIC backed by a device (not a bridge, veth or ifb), else any.
first_mac() { # first_mac physical|any
  printf '%s\n' "$nics_tmp" | while read -r name mac state mtu; do
    [ "$name" = lo ] && continue
    case "$mac" in - | 00:00:00:00:00:00) continue ;; esac
    [ "$1" = physical ] && [ ! -e "$HOST_SYS/class/net/$name/device" ] && continue
    lower "$mac"
    break
  done
}
first_mac=$(first_mac physical)
[ -n "$first_mac" ] || first_mac=$(first_mac any)
MACHINE_MAC=${MACHINE_MAC:-$first_mac}

# --- disks ----------------------------------------------------------------------------------
disk_json() { # disk_json NAME SIZE_BYTES MODEL SERIAL ROTATIONAL(0/1/'')
  case "$5" in 1) rot=true ;; 0) rot=false ;; *) rot=null ;; esac
  printf '{"name":%s,"sizeBytes":%s,"model":%s,"serial":%s,"rotational":%s}\n' \
    "$(json_str "$1")" "$(json_int "$2")" "$(json_str_or_null "$3")" "$(json_str_or_null "$4")" "$rot"
}
pair() { # pair KEY LINE: the value of KEY="..." in lsblk -P output
  printf '%s\n' "$2" | sed -n "s/^\\(.* \\)\\{0,1\\}$1=\"\\([^\"]*\\)\".*/\\2/p" | head -n 1
}
list_disks() {
  if have lsblk; then
    lsblk -b -d -n -P -o NAME,SIZE,TYPE,ROTA,MODEL,SERIAL 2>/dev/null | while read -r line; do
      [ "$(pair TYPE "$line")" = disk ] || continue
      case "$(pair NAME "$line")" in zram* | ram*) continue ;; esac
      disk_json "$(pair NAME "$line")" "$(pair SIZE "$line")" "$(pair MODEL "$line")" "$(pair SERIAL "$line")" "$(pair ROTA "$line")"
    done
  else
    for d in "$HOST_SYS"/block/*; do
      [ -e "$d" ] || continue
      name=${d##*/}
      case "$name" in loop* | ram* | zram* | sr* | fd* | nbd*) continue ;; esac
      sectors=$(first_line "$d/size")
      # /sys/block/*/size counts 512-byte sectors whatever the device's block size.
      case "$sectors" in '' | *[!0-9]*) bytes= ;; *) bytes=$((sectors * 512)) ;; esac
      disk_json "$name" "$bytes" "$(first_line "$d/device/model")" "$(first_line "$d/device/serial")" "$(first_line "$d/queue/rotational")"
    done
  fi
}
disks=$(list_disks | join_lines)

# --- the report -----------------------------------------------------------------------------
json=$(printf '{"agent":{"name":"netboot-discover","version":"1","tools":%s},"mac":%s,"hostname":%s,"uuid":%s,"kernel":{"release":%s,"arch":%s},"dmi":{"vendor":%s,"product":%s,"serial":%s,"boardVendor":%s,"board":%s,"biosVersion":%s},"cpu":{"model":%s,"count":%s},"memory":{"totalKiB":%s},"nics":[%s],"disks":[%s]}' \
  "$(json_str "$TOOLS")" "$(json_str_or_null "$MACHINE_MAC")" "$(json_str_or_null "$host_name")" "$(json_str_or_null "$uuid")" \
  "$(json_str_or_null "$kernel_release")" "$(json_str_or_null "$kernel_arch")" \
  "$(json_str_or_null "$dmi_vendor")" "$(json_str_or_null "$dmi_product")" "$(json_str_or_null "$dmi_serial")" \
  "$(json_str_or_null "$dmi_board_vendor")" "$(json_str_or_null "$dmi_board")" "$(json_str_or_null "$dmi_bios")" \
  "$(json_str_or_null "$cpu_model")" "$(json_int "$cpu_count")" "$(json_int "$mem_kib")" "$nics" "$disks")

if [ "$PRINT" = 1 ]; then
  printf '%s\n' "$json"
  exit 0
fi

if [ -z "${APPLIANCE_URL:-}" ]; then
  echo "discover: APPLIANCE_URL is not set (the microkernel cloud-config passes it)" >&2
  exit 2
fi
if [ -z "$MACHINE_MAC" ]; then
  echo "discover: no MAC address found; set MACHINE_MAC" >&2
  exit 2
fi

url="${APPLIANCE_URL%/}/api/machines/$MACHINE_MAC/facts"
token=${FACTS_TOKEN:-}
case "$token" in
  *[!0-9A-Za-z._~+/=-]*) echo "discover: FACTS_TOKEN holds characters a bearer token cannot" >&2; exit 2 ;;
esac
post() {
  if command -v curl >/dev/null 2>&1; then
    if [ -n "$token" ]; then
      printf '%s' "$json" | curl -fsS -m 30 -H 'Content-Type: application/json' -H "Authorization: Bearer $token" --data-binary @- "$url"
    else
      printf '%s' "$json" | curl -fsS -m 30 -H 'Content-Type: application/json' --data-binary @- "$url"
    fi
  else
    # No -T: busybox 1.35's wget segfaults on -T with --post-data; timeout(1) bounds it instead.
    limit=
    command -v timeout >/dev/null 2>&1 && limit="timeout 60"
    if [ -n "$token" ]; then
      $limit wget -q -O - --header 'Content-Type: application/json' --header "Authorization: Bearer $token" --post-data "$json" "$url"
    else
      $limit wget -q -O - --header 'Content-Type: application/json' --post-data "$json" "$url"
    fi
  fi
}
attempts=${DISCOVER_ATTEMPTS:-5}
pause=${DISCOVER_RETRY_SECONDS:-5}
i=1
while :; do
  if post >/dev/null; then
    echo "discover: facts for $MACHINE_MAC posted to $url" >&2
    exit 0
  fi
  if [ "$i" -ge "$attempts" ]; then
    echo "discover: could not post facts to $url after $attempts attempts" >&2
    exit 1
  fi
  i=$((i + 1))
  sleep "$pause"
done
