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
    'rancher.autologin': 'ttyS0',
    // IP literal on purpose: RancherOS ignores DHCP DNS during cloud-init (NETBOOT-FACTS §6).
    'rancher.cloud_init.datasources': '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]',
    'rancher.state.dev': 'LABEL=RANCHER_STATE',
    'printk.devkmsg': 'on',
  },
  cloudConfig: 'rancheros.cloud-config.yaml.njk',
};

/** A fresh database: the RancherOS profile, set as default. */
export function createDefaultDb(): Db {
  return {
    defaultProfile: RANCHEROS_PROFILE.id,
    profiles: [structuredClone(RANCHEROS_PROFILE)],
    machines: [],
    groups: [],
  };
}
