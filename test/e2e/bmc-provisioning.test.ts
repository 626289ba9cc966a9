/**
 * The RackHD flow end to end with a BMC nobody here wrote: OpenIPMI's ipmi_sim serves IPMI over
 * LAN on the lab network; its chassis-control program starts and stops the QEMU "server"
 * (SeaBIOS + iPXE ROM, NIC then disk in the boot order). The real appliance (`bin/appliance`)
 * drives it through ipmitool: one API call sets a one-shot boot of the discovery stand-in (the
 * busybox test OS running agent/discover.sh), `chassis bootdev pxe` and powers the machine on;
 * the VM netboots it once, reports facts, calls back; a group matches it by a fact; the next
 * power-on (again through the BMC) netboots into the built-in local-disk profile, whose
 * `sanboot --drive 0x80` boots the VM's disk (a boot sector that prints a marker to COM1).
 * Assertions read the serial console, ipmi_sim's chassis calls and the appliance API.
 *
 * A second VM proves local-disk under UEFI: OVMF with its own PXE first and a disk second (an
 * ESP holding Debian's signed grub as \EFI\BOOT\BOOTX64.EFI, whose grub.cfg prints a marker);
 * the appliance sends it local-disk, iPXE exits with a failure status, and the firmware's boot
 * manager goes on to the disk (a bare `exit`, status 0, makes EDK2 stop at its boot menu).
 *
 * Why chassis-control (ipmi_sim's "script" mode) rather than QEMU's ipmi-bmc-extern device:
 * with the VM codec, ipmi_sim answers `chassis bootdev pxe` with 0xcc (NETBOOT-FACTS §7), and
 * the flow needs it.
 */
import test from 'ava';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestOsAppliance, testOsProfile, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { buildQemuArgs, QEMU_BINARY, startVm } from '../../src/lab/qemu.js';
import { DEFAULT_DEB_CACHE, downloadDebs } from '../../src/fetch/secureboot.js';
import { createSilentLogger } from '../../src/log.js';
import { runCommand } from '../../src/lab/process.js';

const MAC = '52:54:00:a5:14:01';
const UEFI_MAC = '52:54:00:a5:14:02';
const LOCAL_DISK_MARKER = 'NETBOOT-LOCAL-DISK-OK';
const UEFI_DISK_MARKER = 'NETBOOT-UEFI-LOCAL-DISK-OK';
const BOOT_TIMEOUT_MS = 240_000;
const TOKEN = 'bmc-e2e-token-14';

let lab: Lab | undefined;
let appliance: LabAppliance | undefined;
let work = '';
let bmcAddress = '';

/**
 * A 512-byte MBR (16-bit real mode, loaded at 0x7c00) that writes LOCAL_DISK_MARKER to COM1
 * (0x3f8) and halts: proof that the machine booted its own disk.
 *   xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
 *   l: lodsb; test al,al; jz d; out dx,al; jmp l
 *   d: cli; hlt; jmp d+1
 */
function markerBootSector(marker: string): Buffer {
  const code = Buffer.from([
    0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x16, 0x7c, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xfa, 0xf4, 0xeb, 0xfd,
  ]);
  const sector = Buffer.alloc(512, 0);
  code.copy(sector, 0);
  sector.write(`\r\n${marker}\r\n\0`, code.length, 'latin1');
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

test.before(async () => {
  assertLabPrerequisites('bios');
  for (const tool of ['ipmi_sim', 'ipmitool'])
    await runCommand('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed (Debian openipmi, ipmitool); run scripts/install`);
    });
  const initrd = buildTestInitrd();
  lab = await createLab({ ipv6Router: true, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  work = lab.workDir;
  bmcAddress = lab.network.replace(/\.0$/, '.250');
  await lab.exec('ip', ['addr', 'add', `${bmcAddress}/24`, 'dev', lab.bridge]);
  const tap = await lab.addTap();

  // The server's disk: only the marker boot sector.
  const disk = join(work, 'disk.img');
  const img = Buffer.alloc(1024 * 1024, 0);
  markerBootSector(LOCAL_DISK_MARKER).copy(img, 0);
  writeFileSync(disk, img);

  // ipmi_sim's chassis-control program: `PROG 0x20 get power|boot`, `set power 0|1`,
  // `set reset 1`, `set boot pxe|default|...` (OpenIPMI lanserv). It starts QEMU itself.
  const qemu = [
    QEMU_BINARY,
    ...buildQemuArgs({
      firmware: 'bios',
      tap,
      mac: MAC,
      memoryMiB: 512,
      extraArgs: ['-drive', `if=none,id=d0,format=raw,file=${disk}`, '-device', 'virtio-blk-pci,drive=d0,bootindex=2'],
    }),
  ]
    .map(sh)
    .join(' ');
  const chassis = join(work, 'chassis.sh');
  writeFileSync(
    chassis,
    `#!/bin/sh
W=${sh(work)}
echo "$*" >>"$W/chassis-calls.log"
alive() { [ -f "$W/vm.pid" ] && kill -0 "$(cat "$W/vm.pid")" 2>/dev/null; }
start() {
  echo "=== power on boot=$(cat "$W/boot" 2>/dev/null || echo default)" >>"$W/serial.log"
  setsid ${qemu} -pidfile "$W/vm.pid" </dev/null >>"$W/serial.log" 2>>"$W/qemu.log" &
  i=0; while [ $i -lt 50 ] && ! alive; do sleep 0.1; i=$((i+1)); done
  echo default >"$W/boot"   # boot flags hold for the next boot only
}
stop() { alive && kill "$(cat "$W/vm.pid")"; i=0; while [ $i -lt 50 ] && alive; do sleep 0.1; i=$((i+1)); done; rm -f "$W/vm.pid"; }
dev=$1; op=$2; shift 2
case $op in
  get) for p in "$@"; do case $p in
         power) if alive; then echo power:1; else echo power:0; fi ;;
         boot) echo "boot:$(cat "$W/boot" 2>/dev/null || echo default)" ;;
         *) echo "Invalid parameter: $p"; exit 1 ;; esac; done ;;
  set) while [ $# -ge 2 ]; do case $1 in
         power) if [ "$2" = 1 ]; then alive || start; else stop; fi ;;
         reset) stop; start ;;
         boot) echo "$2" >"$W/boot" ;;
         shutdown) stop ;;
         identify) ;;
         *) echo "Invalid parameter: $1"; exit 1 ;; esac; shift 2; done ;;
  check) exit 1 ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
exit 0
`,
  );
  chmodSync(chassis, 0o755);
  writeFileSync(join(work, 'serial.log'), '');
  writeFileSync(
    join(work, 'lan.conf'),
    `name "lab14"
set_working_mc 0x20
  startlan 1
    addr ${bmcAddress} 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789ab1414
  endlan
  chassis_control "${chassis} 0x20"
  user 2 true "ipmiusr" "lab-bmc-pw" admin 10 none md2 md5 straight
`,
  );
  writeFileSync(
    join(work, 'bmc.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n',
  );
  lab.spawn('ipmi_sim', ['-n', '-c', join(work, 'lan.conf'), '-f', join(work, 'bmc.emu'), '-s', work], {
    stdoutPath: join(work, 'ipmi_sim.log'),
    stderrPath: join(work, 'ipmi_sim.log'),
    label: 'ipmi_sim',
  });

  appliance = await startTestOsAppliance(
    lab,
    { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
    {
      profiles: [
        testOsProfile('discovery', { name: 'discovery stand-in (busybox + agent/discover.sh)', extraCmdline: { 'netboot.callback': '{{ callback_url? }}' } }),
      ],
      machines: [
        { mac: MAC, hostname: 'bmc-vm', bmc: { address: bmcAddress, user: 'ipmiusr', password: 'lab-bmc-pw' } },
        { mac: UEFI_MAC, hostname: 'uefi-vm', profile: 'local-disk' },
      ],
      groups: [{ id: 'qemu-machines', profile: 'local-disk', selector: { facts: ['dmi.vendor == QEMU', 'cpu.count >= 1'] } }],
      args: ['--api-token', TOKEN],
    },
  );
});

test.after.always(async () => {
  if (work && existsSync(join(work, 'vm.pid'))) await runCommand('sh', ['-c', `kill $(cat ${sh(join(work, 'vm.pid'))}) 2>/dev/null; true`]);
  await appliance?.stop();
  await lab?.destroy();
});

/** POST JSON to the appliance with its API token (from inside the lab namespace). */
async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const { stdout } = await lab!.exec('curl', [
    '-sS',
    '-m',
    '90',
    '-o',
    '-',
    '-w',
    '\\n%{http_code}',
    '-X',
    'POST',
    '-H',
    `Authorization: Bearer ${TOKEN}`,
    '-H',
    'Content-Type: application/json',
    '-d',
    JSON.stringify(body),
    `${appliance!.baseUrl}${path}`,
  ]);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), json: JSON.parse(stdout.slice(0, i)) };
}

async function waitSerial(pattern: RegExp, timeoutMs: number): Promise<string> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const text = readFileSync(join(work, 'serial.log'), 'latin1');
    if (pattern.test(text)) return text;
    if (Date.now() > until) throw new Error(`serial console never matched ${pattern}; tail:\n${text.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function waitPower(state: 'on' | 'off', timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await post(`/api/machines/${MAC}/power`, { action: 'status' });
    if (r.json.power === state) return;
    if (Date.now() > until) throw new Error(`power never became ${state}: ${JSON.stringify(r.json)}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

test.serial('BMC power-cycles the VM into the discovery image once; facts match a group; the next boot goes to the local disk', async (t) => {
  t.timeout(2 * BOOT_TIMEOUT_MS + 120_000);
  const status = await post(`/api/machines/${MAC}/power`, { action: 'status' });
  t.like(status, { status: 200, json: { power: 'off', bmc: `${bmcAddress}:623` } });

  // The RackHD flow in one call: one-shot discovery, bootdev pxe, power on (it is off).
  const boot = await post(`/api/machines/${MAC}/boot`, { profile: 'discovery', once: true, power: 'reboot' });
  t.is(boot.status, 200, JSON.stringify(boot.json));
  t.deepEqual(
    boot.json.power.map((s: { step: string }) => s.step),
    ['chassis bootdev pxe', 'chassis power status', 'chassis power on'],
  );
  t.false(JSON.stringify(boot.json).includes('lab-bmc-pw'));
  const calls = readFileSync(join(work, 'chassis-calls.log'), 'utf8');
  t.regex(calls, /set boot pxe/);
  t.regex(calls, /set power 1/);

  const first = await waitSerial(new RegExp(MARKERS.done), BOOT_TIMEOUT_MS);
  t.regex(first, /=== power on boot=pxe/);
  t.true(first.includes('profile discovery') || first.includes('netboot.callback='), 'the one-shot profile was not booted');
  t.true(first.includes(MARKERS.factsPosted), 'facts were not posted');
  t.true(first.includes(MARKERS.callbackPosted), 'the callback was not posted');
  await waitPower('off', 30_000); // the test OS powers off; ipmi_sim sees QEMU gone

  const machine = (await appliance!.getJson(`/api/machines/${MAC}`)) as { declared: { state: string }; facts: { dmi: { vendor: string } } };
  t.is(machine.declared.state, 'provisioned');
  t.is(machine.facts.dmi.vendor, 'QEMU');
  t.false(JSON.stringify(machine).includes('lab-bmc-pw'));
  const selection = (await appliance!.getJson(`/api/machines/${MAC}/selection`)) as { profile: string; group: string; reasons: string[] };
  t.like(selection, { profile: 'local-disk', group: 'qemu-machines' });
  t.true(selection.reasons.includes('facts: dmi.vendor == QEMU (got "QEMU")'), JSON.stringify(selection));
  const lookup = (await appliance!.getJson(`/api/lookups?q=${MAC}`)) as { ip: string | null };
  t.truthy(lookup.ip);

  // Next boot, again through the BMC with PXE first: the appliance sends it to its disk.
  const on = await post(`/api/machines/${MAC}/power`, { action: 'on', bootdev: 'pxe' });
  t.is(on.status, 200, JSON.stringify(on.json));
  const second = await waitSerial(new RegExp(LOCAL_DISK_MARKER), BOOT_TIMEOUT_MS);
  t.regex(second.slice(second.lastIndexOf('=== power on')), /boots from its local disk/);
  const off = await post(`/api/machines/${MAC}/power`, { action: 'off' });
  t.is(off.status, 200);
  await waitPower('off', 30_000);

  const events = await appliance!.events(MAC);
  const types = events.map((e) => e.type);
  t.true(types.includes('boot-once'));
  t.deepEqual(
    events.filter((e) => e.type === 'state').map((e) => e.detail?.['to']),
    ['provisioning', 'provisioned'],
  );
  const local = events.find((e) => e.type === 'http-script' && e.detail?.['outcome'] === 'local-disk');
  t.like(local?.detail, { group: 'qemu-machines', profile: 'local-disk' });
  t.true(events.filter((e) => e.type === 'power').length >= 3);
});

/**
 * A raw disk: an MBR with one EFI System Partition (type 0xef) from 1 MiB, a FAT file system made
 * by mkfs.fat and filled by mtools, holding Debian's signed grub as the removable-media path
 * \EFI\BOOT\BOOTX64.EFI and a grub.cfg (where its embedded config looks: $cmdpath, then
 * /boot/grub) that prints `marker` and powers off.
 */
async function uefiMarkerDisk(dir: string, marker: string): Promise<string> {
  for (const tool of ['mkfs.fat', 'mcopy', 'mmd'])
    await runCommand('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed (Debian dosfstools, mtools); run scripts/install`);
    });
  const x = await downloadDebs(['grub-efi-amd64-signed'], join(DEFAULT_DEB_CACHE, 'amd64'), { log: createSilentLogger() });
  const grub = join(x, 'usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed');
  const part = join(dir, 'esp.img');
  const cfg = join(dir, 'grub.cfg');
  writeFileSync(cfg, `echo '${marker}'\nsleep 1\nhalt\n`);
  await runCommand('mkfs.fat', ['-C', '-n', 'ESP', part, String(32 * 1024)]);
  await runCommand('mmd', ['-i', part, '::/EFI', '::/EFI/BOOT', '::/boot', '::/boot/grub']);
  await runCommand('mcopy', ['-i', part, grub, '::/EFI/BOOT/BOOTX64.EFI']);
  for (const to of ['::/EFI/BOOT/grub.cfg', '::/boot/grub/grub.cfg']) await runCommand('mcopy', ['-i', part, cfg, to]);
  const fat = readFileSync(part);
  const mbr = Buffer.alloc(1024 * 1024, 0);
  const entry = 446;
  mbr[entry + 4] = 0xef; // EFI System Partition
  mbr.writeUInt32LE(2048, entry + 8); // first LBA
  mbr.writeUInt32LE(fat.length / 512, entry + 12); // sectors
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const disk = join(dir, 'uefi-disk.img');
  writeFileSync(disk, Buffer.concat([mbr, fat]));
  return disk;
}

test.serial('UEFI: local-disk makes iPXE exit so that OVMF boots the next boot option, the disk', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const disk = await uefiMarkerDisk(work, UEFI_DISK_MARKER);
  const vm = await startVm(lab!, {
    firmware: 'uefi',
    mac: UEFI_MAC,
    name: 'uefi-local-disk',
    timeoutMs: BOOT_TIMEOUT_MS,
    extraArgs: [
      '-drive',
      `if=none,id=d1,format=raw,file=${disk}`,
      '-device',
      'virtio-blk-pci,drive=d1,bootindex=2',
      // Only PXEv4 and HTTPv4 on the NIC (both reach iPXE and local-disk, each exits 1): PXEv6
      // and HTTPv6 would first wait out DHCPv6 timeouts.
      '-fw_cfg',
      'name=opt/org.tianocore/IPv6PXESupport,string=n',
      '-fw_cfg',
      'name=opt/org.tianocore/IPv6Support,string=n',
    ],
  });
  t.teardown(() => vm.kill());
  const seen = await vm.waitFor(new RegExp(UEFI_DISK_MARKER), BOOT_TIMEOUT_MS);
  const serial = vm.serial();
  const before = serial.slice(0, seen.match.index);
  t.regex(before, new RegExp(`${UEFI_MAC} boots from its local disk`), 'the appliance did not send local-disk');
  t.notRegex(before, /sanboot/, 'the UEFI path went to sanboot');
  // The firmware itself moved on to the disk (virtio-blk: "UEFI Misc Device"), never to its menu.
  t.regex(before, /BdsDxe: starting Boot[0-9A-F]{4} "UEFI Misc Device"/);
  t.notRegex(before, /starting Boot[0-9A-F]{4} "UiApp"/, 'iPXE exited with success and EDK2 stopped at its setup menu');
  t.log(`disk marker after ${(seen.elapsedMs / 1000).toFixed(0)} s`);
  const events = await appliance!.events(UEFI_MAC);
  const local = events.filter((e) => e.type === 'http-script' && e.detail?.['outcome'] === 'local-disk');
  t.true(local.length >= 1, JSON.stringify(events.map((e) => [e.type, e.detail])));
  t.like(local[0]?.detail, { profile: 'local-disk', via: 'machine-mac' });
});
