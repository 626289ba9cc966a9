/** What a profile's cmdline needs from the machines that name it (src/store/profile-vars.ts), alone and through parseDb. */
import test from 'ava';
import { machineProfileIssues, machineVarIssues, unsetPlaceholders } from '../../src/store/profile-vars.js';
import { parseDb } from '../../src/store/schema.js';

test('a machine naming a profile whose cmdline needs a var or hostname it leaves unset is refused at write time, not looped at boot', (t) => {
  const profiles = [
    { id: 'p', kernel: '/assets/k', cmdline: 'a={{ vars.x }} h={{ hostname }} o={{ vars.o? }} y={{ vars.y }}', vars: { y: 1, deep: { z: 1 } } },
  ];
  const err = t.throws(() => parseDb({ profiles, machines: [{ mac: '52:54:00:00:00:01', profile: 'p' }] }));
  const issues = (err?.['detail' as keyof Error] as unknown as { issues: { field: string; message: string }[] }).issues;
  t.deepEqual(
    issues.map((i) => i.field),
    ['machines[52:54:00:00:00:01].profile', 'machines[52:54:00:00:00:01].profile'],
  );
  t.regex(issues[0]!.message, /places \{\{ vars\.x \}\} in its cmdline and neither the machine nor the profile sets vars\.x/);
  t.regex(issues[1]!.message, /places \{\{ hostname \}\} in its cmdline and the machine has no hostname/);
  // A var that is not a scalar cannot be placed either.
  t.throws(
    () =>
      parseDb({
        profiles: [{ id: 'p', kernel: '/assets/k', cmdline: { a: '{{ vars.deep }}' }, vars: { deep: { z: 1 } } }],
        machines: [{ mac: '52:54:00:00:00:01', profile: 'p' }],
      }),
    {
      message: /vars\.deep/,
    },
  );
  // Set by the machine (or the profile), or optional: accepted; a profile no machine names is not checked.
  t.notThrows(() => parseDb({ profiles, machines: [{ mac: '52:54:00:00:00:01', profile: 'p', hostname: 'n1', vars: { x: 'v' } }] }));
  t.notThrows(() => parseDb({ profiles, machines: [{ mac: '52:54:00:00:00:01' }] }));
});

test('unsetPlaceholders and machineVarIssues: the object form, optional placeholders, machine vars over profile vars', (t) => {
  const profile = { cmdline: { a: '{{ vars.x }}', b: ['{{ hostname }}', '{{ vars.o? }}'] }, vars: { x: ['not', 'scalar'] } };
  t.deepEqual(unsetPlaceholders(profile, {}), ['vars.x', 'hostname']);
  t.deepEqual(unsetPlaceholders(profile, { hostname: 'n1', vars: { x: 0 } }), []);
  t.deepEqual(unsetPlaceholders({ cmdline: 'quiet' }, {}), []);
  // Only vars the cmdline places are checked as tokens.
  const varIssues = machineVarIssues(profile, { x: 'a b', other: 'c d' });
  t.deepEqual(
    varIssues.map((i) => i.path),
    [['x']],
  );
  t.regex(varIssues[0]!.message, /placed in the kernel command line of its profile and contains whitespace/);
  // Paths from the database root; a machine naming no profile, or a missing one, is not checked here.
  const issues = machineProfileIssues({
    profiles: [{ id: 'p', ...profile }],
    machines: [{}, { profile: 'ghost' }, { profile: 'p', hostname: 'n1', vars: { x: 'a b' } }],
  });
  t.deepEqual(
    issues.map((i) => i.path),
    [['machines', 2, 'vars', 'x']],
  );
});
