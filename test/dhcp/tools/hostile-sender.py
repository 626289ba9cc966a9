#!/usr/bin/env python3
"""A hostile DHCP client for the namespace tests (written with the standard library only, so it
shares no code with the appliance): sends crafted BOOTREQUESTs from 0.0.0.0:68 to
255.255.255.255:67 and prints one JSON line with every reply heard.

  hostile-sender.py MODE COUNT LISTEN_S [key=value ...]

MODE   initreboot: REQUEST with option 50 and no server id (RFC 2131 INIT-REBOOT)
       discover:   DISCOVER
COUNT  packets to send (each with its own xid; chaddr random unless mac= is given)
keys   mac=52:54:00:aa:00:01   chaddr for every packet
       ip=10.99.0.50           option 50 (initreboot); with first= and COUNT>1 ips count up
       first=10.99.0.100       first address requested, one more per packet
       clientid=ff0102...      option 61 (hex)
       gap_ms=2                pause between packets
       dev=eth0                interface to send from
"""
import json, os, random, socket, struct, sys, time

def ip_bytes(s):
    return socket.inet_aton(s)

def packet(mode, xid, mac, requested, clientid):
    chaddr = bytes.fromhex(mac.replace(':', '')) + bytes(10)
    header = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, xid, 0, 0x8000,
                         bytes(4), bytes(4), bytes(4), bytes(4), chaddr, bytes(64), bytes(128))
    opts = bytes([99, 130, 83, 99])
    opts += bytes([53, 1, 3 if mode == 'initreboot' else 1])
    if requested:
        opts += bytes([50, 4]) + ip_bytes(requested)
    if clientid:
        cid = bytes.fromhex(clientid)
        opts += bytes([61, len(cid)]) + cid
    opts += bytes([55, 3, 1, 3, 51, 255])
    return header + opts

def parse(data):
    if len(data) < 240 or data[0] != 2:
        return None
    xid = struct.unpack('!I', data[4:8])[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    mac = ':'.join('%02x' % b for b in data[28:34])
    mtype, sid, i = None, None, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, ln = data[i], data[i + 1]
        val = data[i + 2:i + 2 + ln]
        if code == 53: mtype = val[0]
        if code == 54 and ln == 4: sid = socket.inet_ntoa(val)
        i += 2 + ln
    return {'xid': xid, 'type': mtype, 'yiaddr': yiaddr, 'mac': mac, 'server': sid}

def main():
    mode, count, listen_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    kv = dict(a.split('=', 1) for a in sys.argv[4:])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    # An unconfigured interface has no route: send out of it directly, as DHCP clients do.
    s.setsockopt(socket.SOL_SOCKET, 25, kv.get('dev', 'eth0').encode())  # SO_BINDTODEVICE
    s.bind(('0.0.0.0', 68))
    s.setblocking(False)
    first = kv.get('first')
    base = struct.unpack('!I', ip_bytes(first))[0] if first else None
    sent = []
    replies = []
    def drain():
        while True:
            try:
                data, _ = s.recvfrom(4096)
            except BlockingIOError:
                return
            r = parse(data)
            if r and r['xid'] in sent_set:
                replies.append(r)
    sent_set = set()
    for n in range(count):
        xid = random.getrandbits(32)
        mac = kv.get('mac') or '02:%02x:%02x:%02x:%02x:%02x' % tuple(random.getrandbits(8) for _ in range(5))
        requested = kv.get('ip') or (socket.inet_ntoa(struct.pack('!I', base + n)) if base is not None else None)
        s.sendto(packet(mode, xid, mac, requested, kv.get('clientid')), ('255.255.255.255', 67))
        sent.append(xid)
        sent_set.add(xid)
        drain()
        time.sleep(int(kv.get('gap_ms', '2')) / 1000)
    deadline = time.time() + listen_s
    while time.time() < deadline:
        drain()
        time.sleep(0.02)
    print(json.dumps({'sent': len(sent), 'replies': replies}))

main()
