/**
 * The database a fresh appliance starts with: one RancherOS profile as the default, so a
 * machine that PXE-boots against a new appliance gets a real OS once the assets are present
 * (and a clear "assets missing" message on its console until then).
 */
import type { Db, Profile } from './schema.js';

/** RancherOS 1.5.8 booted from local assets (NETBOOT-FACTS §6), cloud-config from this appliance. */
export const RANCHEROS_PROFILE: Profile = {
  id: 'rancheros',
  name: 'RancherOS v1.5.8',
  kernel: '/assets/rancheros/v1.5.8/vmlinuz',
  initrd: ['/assets/rancheros/v1.5.8/initrd'],
  cmdline: {
    // Both consoles: tty0 for a monitor, ttyS0 for serial/IPMI SOL; autologin needs ttyS0.
    console: ['tty0', 'ttyS0,115200n8'],
    // Optional placeholders ("?"): left out when the var is unset or null, so a machine's
    // `"vars": { "autologin": null }` switches autologin off and rancher.password= appears
    // only when a password var is set (profile or machine).
    'rancher.autologin': '{{ vars.autologin? }}',
    'rancher.password': '{{ vars.password? }}',
    // IP literal on purpose: RancherOS ignores DHCP DNS during cloud-init (NETBOOT-FACTS §6).
    // The appliance's --address is always an IPv4 address (config.ts).
    'rancher.cloud_init.datasources': '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]',
    // No partition carries this label on a fresh machine, so RancherOS runs from RAM.
    'rancher.state.dev': 'LABEL=RANCHER_STATE',
    // Userspace may write to /dev/kmsg without rate limits: the microkernel's rc.local logs
    // its progress there, so it shows on the serial console.
    'printk.devkmsg': 'on',
  },
  cloudConfig: 'rancheros.cloud-config.yaml.njk',
  vars: {
    autologin: 'ttyS0',
    // The discovery image `node bin/appliance build microkernel` writes (agent/README.md). Until
    // it exists the cloud-config is served without it and says so in a comment.
    microkernel: { image: '/assets/microkernel/discovery.tar', name: 'discovery', ref: 'netboot/discovery:1' },
  },
};

/**
 * Debian 12's network installer from the Debian package (`fetch debian-installer`), fully
 * automated by a per-machine preseed from this appliance (`/preseed?mac=`, templates/
 * debian.preseed.njk). `auto=true priority=critical` defers the locale and keyboard questions
 * until the preseed is loaded; `url=` is where it is loaded from (an IP literal: the installer
 * has no name service for the appliance).
 */
export const DEBIAN_INSTALLER_PROFILE: Profile = {
  id: 'debian-installer',
  name: 'Debian 12 installer (preseeded)',
  kernel: '/assets/debian-installer/12/amd64/linux',
  initrd: ['/assets/debian-installer/12/amd64/initrd.gz'],
  cmdline: {
    auto: 'true',
    priority: 'critical',
    url: 'http://{{ address }}:{{ port }}/preseed?mac={{ mac }}',
    // netcfg/choose_interface (d-i's short alias): the NIC that has a link.
    interface: 'auto',
    DEBIAN_FRONTEND: 'text',
    console: ['tty0', 'ttyS0,115200n8'],
  },
  preseed: 'debian.preseed.njk',
};

/** File name of the JSON Schema written beside a new database (its `"$schema"` names it). */
export const DB_SCHEMA_FILE = 'appliance-db.schema.json';

/** A fresh database: the RancherOS profile, set as default; `$schema` lets editors validate it. */
export function createDefaultDb(): Db {
  return {
    $schema: `./${DB_SCHEMA_FILE}`,
    defaultProfile: RANCHEROS_PROFILE.id,
    profiles: [structuredClone(RANCHEROS_PROFILE), structuredClone(DEBIAN_INSTALLER_PROFILE)],
    machines: [],
    groups: [],
  };
}
