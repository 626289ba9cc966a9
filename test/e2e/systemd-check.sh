#!/bin/bash
# The live-systemd check of contrib/systemd/, run inside the VM of test/e2e/systemd.test.ts as
# sdvm-check.service once the VM has booted (systemd is PID 1 there). It installs the units with
# scripts/install-systemd --interface eth0, starts the socket and the service, and reports on the
# serial console in "=== SDVM ... ===" lines the host reads; the host sends the DHCP requests.
# Every wait is bounded; any failure prints the unit's journal, says FAIL and powers off.
set -u
exec >/dev/ttyS0 2>&1
unit=netboot-appliance-iface.service
socket=netboot-appliance-iface.socket
address="${SDVM_ADDRESS:?}"
mac1="${SDVM_MAC1:?}"
mac2="${SDVM_MAC2:?}"

say() { echo "=== SDVM $* ==="; }
finish() {
  journalctl -b -u "$unit" -u "$socket" --no-pager -o cat | tail -n 60
  say "$1"
  systemctl poweroff
  exit 0
}
# wait_log N PATTERN SECONDS: until the service's journal has N lines with PATTERN.
wait_log() {
  local i
  for ((i = 0; i < $3; i++)); do
    [ "$(journalctl -u "$unit" -o cat --no-pager | grep -c -F -- "$2")" -ge "$1" ] && return 0
    sleep 1
  done
  return 1
}
main_pid() { systemctl show -p MainPID --value "$unit"; }
# The user and the capability sets of a process, as the kernel reports them.
creds() { echo "user=$(stat -c %U "/proc/$1") $(grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs):' "/proc/$1/status" | tr -d ' \t' | tr ':\n' '= ')"; }

udevadm settle --timeout=60
ip link set lo up
ip link set eth0 up && ip addr add "$address/24" dev eth0 || finish "FAIL network"
cd /opt/netboot-appliance || finish "FAIL no appliance tree"
scripts/install-systemd --interface eth0 || finish "FAIL install-systemd"
systemctl enable --now "$socket" "$unit" || finish "FAIL enable"
wait_log 1 '"msg":"netboot appliance ready"' 300 || finish "FAIL the service did not become ready"
pid=$(main_pid)
say "SOCKETS $(ss -H -u -l -n -p '( sport = :67 or sport = :4011 )' | tr -s ' ' | tr '\n' ';')"
say "READY pid=$pid $(creds "$pid")"

# The host sends a DISCOVER to 67, then EDK2's request to 4011, from MAC1; the appliance logs both
# answers. Both are awaited before the reload and the kill: a request that arrives while the
# service is down waits in systemd's socket and is answered only by the restarted process, a
# minute later under TCG, long after the host stopped listening (the 4011 "defect" of issue 15).
wait_log 1 '"msg":"proxydhcp offer' 240 || finish "FAIL no DISCOVER from $mac1 answered by the service"
wait_log 1 '"msg":"proxydhcp ack"' 240 || finish "FAIL no 4011 request from $mac1 answered by the service"
systemctl reload "$unit" || finish "FAIL systemctl reload"
wait_log 1 '"msg":"reloaded"' 120 || finish "FAIL no reloaded line after systemctl reload"
say "RELOADED pid=$(main_pid)"

kill -9 "$pid"
wait_log 2 '"msg":"netboot appliance ready"' 300 || finish "FAIL not restarted after kill -9"
new=$(main_pid)
say "RESTARTED old=$pid new=$new restarts=$(systemctl show -p NRestarts --value "$unit") state=$(systemctl is-active "$unit") $(creds "$new")"

# The restarted process got the same sockets from systemd: the host's second DISCOVER reaches it.
wait_log 1 "$mac2" 240 || finish "FAIL no request from $mac2 reached the restarted service"
finish DONE
