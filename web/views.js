// Console pages: machines table, a machine's live timeline, the schema-checked editor for
// profiles, groups and machines, and the appliance status.
import { h } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { api, ApiError, followEvents } from './api.js';
import { itemSchema, validate } from './schema.js';

const html = htm.bind(h);

const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : '');
const fmtBytes = (n) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} B`);

/** Run `load` now and whenever `deps` change; returns [data, error, reload]. */
function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (data) => live && setState({ data, error: undefined }),
      (error) => live && setState((s) => ({ data: s.data, error })),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [state.data, state.error, () => setTick((t) => t + 1)];
}

/** Call `fn` at most once per `ms` (trailing). */
function useThrottled(fn, ms) {
  const timer = useRef();
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => clearTimeout(timer.current), []);
  return () => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      latest.current();
    }, ms);
  };
}

function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}</p>`;
}

function factsText(f) {
  if (!f) return '';
  return [
    f.vendor && `${f.vendor}${f.product ? ` ${f.product}` : ''}`,
    f.cpus !== undefined && `${f.cpus} CPU`,
    f.memoryMiB !== undefined && `${f.memoryMiB} MiB`,
    f.disks !== undefined && `${f.disks} disk${f.disks === 1 ? '' : 's'}${f.diskBytes ? ` (${fmtBytes(f.diskBytes)})` : ''}`,
    f.nics !== undefined && `${f.nics} NIC${f.nics === 1 ? '' : 's'}`,
  ]
    .filter(Boolean)
    .join(', ');
}

const VIA = { 'machine-uuid': 'UUID', 'machine-mac': 'MAC', group: 'group', default: 'default' };
const profileText = (m) => (m.profile ? `${m.profile} (${VIA[m.via] ?? m.via}${m.group ? ` ${m.group}` : ''})` : 'none');
/** Why the group matched, one selector key per line (the API's reasons). */
const whyText = (m) => (m.reasons ?? []).join('\n');
/** Facts as the table shows them, marked when they cannot drive fact selectors. */
const factsCell = (m) =>
  m.facts
    ? html`${factsText(m.facts)}${
        m.factsVerified === false
          ? html` <span class="badge" title="reported without a trusted boot's facts token: shown, but matches no fact selector">unverified</span>`
          : null
      }`
    : '';

const COLUMNS = [
  ['mac', 'MAC'],
  ['hostname', 'Hostname'],
  ['uuid', 'UUID'],
  ['profile', 'Profile (why)'],
  ['state', 'State'],
  ['lastSeen', 'Last seen'],
  ['lastIp', 'IP'],
  ['arch', 'Arch'],
  ['facts', 'Facts'],
];

/** The machines table: declared, discovered and wire-only machines, live. */
export function MachinesPage() {
  const [rows, error, reload] = useLoad(() => api('GET', '/api/console/machines'), []);
  const [filter, setFilter] = useState('');
  const [kind, setKind] = useState('all');
  const [sort, setSort] = useState({ key: 'lastSeen', dir: -1 });
  const [selected, setSelected] = useState(new Set());
  const [busy, setBusy] = useState(null);
  const refresh = useThrottled(reload, 400);
  useEffect(() => followEvents({ onEvent: refresh }), []);

  const shown = useMemo(() => {
    const q = filter.trim().toLowerCase();
    const list = (rows ?? []).filter(
      (m) =>
        (kind === 'all' || m.kind === kind) &&
        (!q || [m.mac, m.hostname, m.uuid, m.profile, m.state, m.lastIp, m.arch, factsText(m.facts)].some((v) => v && String(v).toLowerCase().includes(q))),
    );
    const val = (m) => (sort.key === 'facts' ? factsText(m.facts) : sort.key === 'profile' ? profileText(m) : (m[sort.key] ?? ''));
    return list.sort((a, b) => String(val(a)).localeCompare(String(val(b))) * sort.dir);
  }, [rows, filter, kind, sort]);

  const discovered = shown.filter((m) => m.kind === 'discovered');
  const toggle = (mac) => {
    const next = new Set(selected);
    next.has(mac) ? next.delete(mac) : next.add(mac);
    setSelected(next);
  };
  const deleteSelected = async () => {
    const macs = [...selected].filter((mac) => discovered.some((m) => m.mac === mac));
    if (
      macs.length === 0 ||
      !window.confirm(`Delete ${macs.length} discovered machine${macs.length === 1 ? '' : 's'}? They register again on their next boot.`)
    )
      return;
    setBusy('deleting');
    const failed = [];
    for (const mac of macs) await api('DELETE', `/api/machines/${mac}`).catch((e) => failed.push(`${mac}: ${e.message}`));
    setBusy(failed.length ? `not deleted: ${failed.join('; ')}` : null);
    setSelected(new Set());
    reload();
  };

  return html`<section>
    <h2>Machines</h2>
    <div class="toolbar">
      <input
        type="search"
        placeholder="Filter (MAC, name, profile, IP...)"
        aria-label="Filter machines"
        value=${filter}
        onInput=${(e) => setFilter(e.target.value)}
      />
      <select aria-label="Kind" value=${kind} onChange=${(e) => setKind(e.target.value)}>
        <option value="all">all</option>
        <option value="declared">declared</option>
        <option value="discovered">discovered</option>
        <option value="seen">only seen on the wire</option>
      </select>
      <button type="button" disabled=${selected.size === 0 || busy === 'deleting'} onClick=${deleteSelected}>
        Delete selected discovered (${selected.size})
      </button>
    </div>
    ${busy && busy !== 'deleting' ? html`<p class="error" role="alert">${busy}</p>` : null}
    <${ErrorNote} error=${error} />
    ${rows === undefined && !error ? html`<p>Loading…</p>` : null}
    ${rows && shown.length === 0 ? html`<p class="empty">No machines yet. Machines appear here when they boot from this appliance.</p>` : null}
    ${
      shown.length > 0
        ? html`<table class="list machines">
            <thead>
              <tr>
                <th><span class="sr">select</span></th>
                ${COLUMNS.map(([key, label]) => html`<th><button type="button" class="sort" aria-sort=${sort.key === key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'} onClick=${() => setSort({ key, dir: sort.key === key ? -sort.dir : 1 })}>${label}${sort.key === key ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''}</button></th>`)}
              </tr>
            </thead>
            <tbody>
              ${shown.map(
                (m) =>
                  html`<tr data-mac=${m.mac} class=${m.failure ? 'failed' : ''}>
                    <td data-label="select">
                      ${m.kind === 'discovered' ? html`<input type="checkbox" aria-label=${`select ${m.mac}`} checked=${selected.has(m.mac)} onChange=${() => toggle(m.mac)} />` : null}
                    </td>
                    <td data-label="MAC">
                      <div><a href=${`#/machines/${m.mac}`}>${m.mac}</a> <span class=${`kind kind-${m.kind}`}>${m.kind}</span></div>
                    </td>
                    <td data-label="Hostname">${m.hostname ?? ''}</td>
                    <td data-label="UUID" class="mono">${m.uuid ?? ''}</td>
                    <td data-label="Profile">
                      <div title=${whyText(m)}>${profileText(m)}</div>
                      ${
                        m.reasons?.length
                          ? html`<ul class="why" aria-label="why this group">
                              ${m.reasons.map((r) => html`<li>${r}</li>`)}
                            </ul>`
                          : null
                      }
                    </td>
                    <td data-label="State">
                      <div>${m.state ?? ''}${m.failure ? html` <span class="badge bad" title=${m.failure.message}>stuck</span>` : null}</div>
                    </td>
                    <td data-label="Last seen"><div>${fmtTime(m.lastSeen)}${m.lastEvent ? html`<br /><small>${m.lastEvent}</small>` : null}</div></td>
                    <td data-label="IP">${m.lastIp ?? ''}</td>
                    <td data-label="Arch">${m.arch ?? ''}</td>
                    <td data-label="Facts">${factsCell(m)}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
        : null
    }
  </section>`;
}

function detailText(detail) {
  if (!detail) return '';
  return Object.entries(detail)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join('  ');
}

/** One event in plain words; the raw detail stays beside it. */
export function describeEvent(e) {
  const d = e.detail ?? {};
  switch (e.type) {
    case 'dhcp-offer':
    case 'dhcp-ack':
      return `${e.type === 'dhcp-offer' ? 'DHCP offer' : 'DHCP ack'}${d.arch ? ` to ${d.arch} firmware` : ''}${d.file ? `: boot ${d.file}` : ': no boot file yet (continues on port 4011)'}${d.port ? ` (port ${d.port})` : ''}`;
    case 'dhcp-nak':
      return 'DHCP request refused (NAK)';
    case 'dhcp-release':
      return 'released its DHCP lease';
    case 'dhcp-decline':
      return 'declined its address (conflict on the network)';
    case 'dhcp-refused':
      return d.claimedBy
        ? `its reserved address ${e.ip ?? ''} was claimed by ${d.claimedBy} (refused)`
        : `DHCP refused: ${d.reason ?? 'no address'}${d.reservedFor ? ` (reserved for ${d.reservedFor})` : ''}`;
    case 'dhcp-request':
      return `took ${e.ip ?? 'an address'} from the DHCP server ${d.server ?? ''}`;
    case 'dhcp-mode':
      return d.steppedDown ? `DHCP server stepped down: ${(d.servers ?? []).join(', ')} answers on the segment` : `DHCP server handing out addresses again`;
    case 'tftp-file':
      return `TFTP sent ${d.file ?? 'a file'}${d.bytes !== undefined ? ` (${fmtBytes(d.bytes)}${d.ms !== undefined ? ` in ${d.ms} ms` : ''})` : ''}`;
    case 'tftp-error':
      return d.reason === 'client-error'
        ? `TFTP ${d.file ?? ''} aborted by the client${d.message ? `: ${d.message}` : ''} (normal after a size probe)`
        : `TFTP ${d.file ?? ''} failed: ${d.reason ?? d.message ?? 'error'}`;
    case 'http-script':
      if (d.script) return `fetched ${d.script}`;
      return d.outcome === 'retry'
        ? `cannot boot yet: ${d.reason ?? ''}`
        : `got the iPXE script for profile ${d.profile ?? '?'}${d.via ? ` (chosen by ${VIA[d.via] ?? d.via}${d.group ? ` ${d.group}` : ''})` : ''}${
            Array.isArray(d.why) && d.why.length ? `: ${d.why.join(', ')}` : ''
          }${d.oneShot === 'kept' ? `; one-shot kept for the machine (${d.oneShotWhy ?? ''})` : ''}`;
    case 'http-asset':
      return `downloaded ${d.file ?? 'an asset'}${d.status === 206 ? ' (range)' : ''}`;
    case 'http-cloud-config':
      return `fetched its cloud-config (profile ${d.profile ?? '?'})${d.microkernel ? `, microkernel ${d.microkernel}` : ''}`;
    case 'facts':
      if (d.outcome === 'refused') return `facts report refused: ${d.reason ?? ''}`;
      return `reported its hardware facts (${d.outcome ?? 'stored'}${d.verified === false ? `, unverified: ${d.reason ?? ''}` : ''})`;
    case 'discovered':
      return 'registered as a discovered machine';
    case 'grub-script':
      return d.outcome === 'retry'
        ? `cannot boot yet (grub): ${d.reason ?? ''}`
        : `got the grub script for profile ${d.profile ?? '?'}${d.secureBoot ? ' (secure boot)' : ''}`;
    case 'callback-refused':
      return `provisioning callback from ${d.from ?? 'an unknown address'} refused: ${d.reason ?? ''}${d.suppressed ? ` (${d.suppressed} more refused since the last one shown)` : ''}`;
    case 'boot-diagnosis':
      return `${d.explanation ?? d.reason ?? 'boot problem'}${d.fix ? `. Fix: ${d.fix}` : ''}`;
    default:
      return e.type;
  }
}

const EVENT_CLASS = {
  'tftp-error': 'bad',
  'dhcp-nak': 'bad',
  'dhcp-decline': 'bad',
  'dhcp-refused': 'bad',
  'callback-refused': 'bad',
  'boot-diagnosis': 'bad',
};

/** One machine's boot timeline, updated live from the event stream. */
export function TimelinePage({ mac }) {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState('connecting');
  const [row, rowError, reloadRow] = useLoad(() => api('GET', `/api/console/machines/${mac}`), [mac]);
  const refreshRow = useThrottled(reloadRow, 400);
  useEffect(() => {
    setEvents([]);
    return followEvents({
      mac,
      onReset: () => setEvents([]),
      onState: setState,
      onEvent: (e) => {
        setEvents((list) => [...list, e]);
        refreshRow();
      },
    });
  }, [mac]);
  const notFound = rowError instanceof ApiError && rowError.status === 404;
  return html`<section>
    <p><a href="#/machines">← Machines</a></p>
    <h2>Timeline of <span class="mono">${mac}</span> <span class=${`live live-${state}`} aria-live="polite">${state === 'live' ? '● live' : state}</span></h2>
    ${
      row
        ? html`<dl class="summary">
              <dt>Profile</dt>
              <dd>${profileText(row)}</dd>
              ${
                row.reasons?.length
                  ? html`<dt>Why</dt>
                      <dd>
                        <ul class="why" aria-label="why this group">
                          ${row.reasons.map((r) => html`<li>${r}</li>`)}
                        </ul>
                      </dd>`
                  : null
              }
              <dt>State</dt>
              <dd>${row.state ?? ''}${row.kind === row.state ? '' : ` (${row.kind})`}</dd>
              <dt>Hostname</dt>
              <dd>${row.hostname ?? ''}</dd>
              <dt>Last seen</dt>
              <dd>${fmtTime(row.lastSeen)} ${row.lastIp ? `from ${row.lastIp}` : ''}</dd>
              <dt>Arch</dt>
              <dd>${row.arch ?? ''}</dd>
              <dt>Facts</dt>
              <dd>${factsCell(row)}</dd>
            </dl>
            ${row.kind !== 'seen' ? html`<p><a href=${`#/edit/machines/${mac}`}>Edit this machine's record</a></p>` : null}
            ${row.failure ? html`<div class="failure" role="alert"><strong>Why it is stuck:</strong> ${row.failure.message}</div>` : null}`
        : null
    }
    ${notFound ? html`<p class="empty">Nothing known about this machine yet; its events appear here as soon as it boots.</p>` : html`<${ErrorNote} error=${rowError} />`}
    <ol class="timeline" aria-label="boot events">
      ${events.map(
        (e) =>
          html`<li class=${`ev ev-${e.type} ${EVENT_CLASS[e.type] ?? ''} ${e.detail?.outcome === 'retry' ? 'bad' : ''}`}>
            <time datetime=${e.at}>${new Date(e.at).toLocaleTimeString()}</time>
            <span class="type">${e.type}</span>
            <span class="ip">${e.ip ?? ''}</span>
            <span class="what">${describeEvent(e)}</span>
            <span class="detail">${detailText(e.detail)}</span>
          </li>`,
      )}
    </ol>
    ${events.length === 0 && state === 'live' ? html`<p class="empty">No events yet for this machine.</p>` : null}
    <${Preview} mac=${mac} />
  </section>`;
}

const COLLECTIONS = {
  profiles: { key: 'id', title: 'Profiles', one: 'profile' },
  groups: { key: 'id', title: 'Groups', one: 'group' },
  machines: { key: 'mac', title: 'Machines', one: 'machine' },
};

/** A field's text in the form: strings as typed, everything else as JSON. */
function toText(prop, value) {
  if (value === undefined) return '';
  return prop.type === 'string' ? value : JSON.stringify(value, null, 2);
}

/** The form's texts back into a record; JSON that does not parse is an error at its field. */
function fromTexts(schema, texts) {
  const value = {};
  const errors = {};
  for (const [name, prop] of Object.entries(schema.properties)) {
    const text = texts[name] ?? '';
    if (text.trim() === '') continue;
    if (prop.type === 'string') value[name] = text;
    else {
      try {
        value[name] = JSON.parse(text);
      } catch (e) {
        errors[name] = `is not valid JSON: ${e.message}`;
      }
    }
  }
  return { value, errors };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The operator's record from an API answer: machines come as `{ mac, declared, runtime }`
 * (declared and discovered together); the editor edits the declared part only.
 */
const recordOf = (collection, r) => (collection === 'machines' && r && 'declared' in r ? (r.declared ?? { mac: r.mac }) : r);

/** The editor of one collection: list on one side, the schema-driven form on the other. */
export function EditorPage({ collection, id }) {
  const meta = COLLECTIONS[collection];
  const [schema, schemaError] = useLoad(() => api('GET', '/api/console/schema'), []);
  const [list, listError, reloadList] = useLoad(() => api('GET', `/api/${collection}`).then((l) => l.map((r) => recordOf(collection, r))), [collection]);
  if (!meta) return html`<p class="error">Unknown collection ${collection}</p>`;
  const item = schema ? itemSchema(schema, collection) : undefined;
  return html`<section class="editor">
    <h2>${meta.title}</h2>
    <${ErrorNote} error=${schemaError ?? listError} />
    <div class="split">
      <nav class="records" aria-label=${`${meta.title} list`}>
        <a class="new" href=${`#/edit/${collection}/+new`}>+ New ${meta.one}</a>
        ${collection === 'profiles' && list ? html`<${DefaultProfile} profiles=${list} />` : null}
        <ul>
          ${(list ?? []).map((r) => html`<li><a href=${`#/edit/${collection}/${encodeURIComponent(r[meta.key])}`} aria-current=${r[meta.key] === id ? 'page' : undefined}>${r[meta.key]}</a>${r.name ? html` <small>${r.name}</small>` : null}</li>`)}
        </ul>
      </nav>
      ${item && id !== undefined ? html`<${RecordForm} key=${`${collection}/${id}`} collection=${collection} meta=${meta} schema=${item} root=${schema} id=${id === '+new' ? undefined : id} onSaved=${reloadList} />` : html`<p class="empty">Choose a ${meta.one} to edit, or make a new one.</p>`}
    </div>
  </section>`;
}

/** The profile booted by machines that match nothing else. */
function DefaultProfile({ profiles }) {
  const [current, error, reload] = useLoad(() => api('GET', '/api/default-profile'), []);
  const [saveError, setSaveError] = useState(null);
  const set = async (id) => {
    setSaveError(null);
    await api('PUT', '/api/default-profile', { id: id || null }).catch(setSaveError);
    reload();
  };
  return html`<div class="default-profile">
    <label for="default-profile">Default profile</label>
    <select id="default-profile" value=${current?.id ?? ''} onChange=${(e) => set(e.target.value)}>
      <option value="">(none: unknown machines wait)</option>
      ${profiles.map((p) => html`<option value=${p.id}>${p.id}</option>`)}
    </select>
    <${ErrorNote} error=${error ?? saveError} />
  </div>`;
}

function RecordForm({ collection, meta, schema, root, id, onSaved }) {
  const url = (key) => `/api/${collection}/${encodeURIComponent(key)}`;
  const [original, setOriginal] = useState(id === undefined ? {} : undefined);
  const [texts, setTexts] = useState({});
  const [serverError, setServerError] = useState(null);
  const [conflict, setConflict] = useState(null);
  const [notice, setNotice] = useState(null);
  const [loadError, setLoadError] = useState(null);

  const load = (record) => {
    setOriginal(record);
    setTexts(Object.fromEntries(Object.entries(schema.properties).map(([k, p]) => [k, toText(p, record[k])])));
    setConflict(null);
    setServerError(null);
  };
  useEffect(() => {
    if (id === undefined) load({});
    else api('GET', url(id)).then((r) => load(recordOf(collection, r)), setLoadError);
  }, [id]);

  const { value, errors: parseErrors } = fromTexts(schema, texts);
  const fieldErrors = { ...parseErrors };
  for (const e of validate(schema, value, root)) {
    const field = String(e.path[0] ?? meta.key);
    if (fieldErrors[field]) continue;
    fieldErrors[field] = `${e.path.length > 1 ? `${e.path.slice(1).join('.')}: ` : ''}${e.message}`;
  }
  if (serverError?.field) {
    const field = serverError.field.split('.')[0];
    if (field in schema.properties && !fieldErrors[field]) fieldErrors[field] = serverError.message.replace(/^[^:]*:\s*/, '');
  }
  const invalid = Object.keys(fieldErrors).length > 0;
  const key = value[meta.key];

  const save = async (force = false) => {
    setNotice(null);
    setServerError(null);
    try {
      if (id !== undefined && !force) {
        // Someone (the file, another console, the API) may have changed it since it was loaded.
        const current = await api('GET', url(id)).then(
          (r) => recordOf(collection, r),
          (e) => (e.status === 404 ? null : Promise.reject(e)),
        );
        if (!same(current, original)) {
          setConflict(current);
          return;
        }
      }
      const saved = await api('PUT', url(key), value);
      load(saved);
      setNotice(`Saved ${meta.one} ${key}.`);
      onSaved();
      if (id === undefined) location.hash = `#/edit/${collection}/${encodeURIComponent(key)}`;
    } catch (e) {
      setServerError(e);
    }
  };
  const remove = async () => {
    if (!window.confirm(`Delete ${meta.one} ${id}?`)) return;
    try {
      await api('DELETE', url(id));
      onSaved();
      location.hash = `#/edit/${collection}`;
    } catch (e) {
      setServerError(e);
    }
  };

  if (loadError) return html`<${ErrorNote} error=${loadError} />`;
  if (original === undefined) return html`<p>Loading…</p>`;
  return html`<form
    class="record"
    novalidate
    onSubmit=${(e) => {
      e.preventDefault();
      if (!invalid) save();
    }}
  >
    <h3>${id === undefined ? `New ${meta.one}` : `${meta.one} ${id}`}</h3>
    ${Object.entries(schema.properties).map(([name, prop]) => {
      const err = fieldErrors[name];
      const fid = `f-${name}`;
      const readOnly = name === meta.key && id !== undefined;
      const common = {
        id: fid,
        name,
        'aria-invalid': err ? 'true' : 'false',
        'aria-describedby': err ? `${fid}-err` : undefined,
        readOnly,
        value: texts[name] ?? '',
        onInput: (e) => setTexts({ ...texts, [name]: e.target.value }),
      };
      const input = prop.enum
        ? html`<select ...${common} onChange=${common.onInput}>
            <option value="">(none)</option>
            ${prop.enum.map((v) => html`<option value=${v}>${v}</option>`)}
          </select>`
        : prop.type === 'string'
          ? html`<input type="text" spellcheck="false" ...${common} />`
          : html`<textarea rows=${Math.min(12, Math.max(2, (texts[name] ?? '').split('\n').length))} spellcheck="false" ...${common}></textarea>`;
      const required = (schema.required ?? []).includes(name);
      return html`<div class=${`field${err ? ' invalid' : ''}`} data-field=${name}>
        <label for=${fid}>${name}${required ? ' *' : ''}${prop.type !== 'string' ? html` <small>(JSON)</small>` : null}</label>
        ${input} ${prop.description ? html`<small class="hint">${prop.description}</small>` : null}
        ${err ? html`<p class="field-error" id=${`${fid}-err`} role="alert">${err}</p>` : null}
      </div>`;
    })}
    ${serverError && !(serverError.field && serverError.field.split('.')[0] in schema.properties) ? html`<p class="error" role="alert">${serverError.message}</p>` : null}
    ${
      conflict !== null
        ? html`<div class="conflict" role="alert">
            <p>
              <strong>Changed underneath:</strong> this ${meta.one} ${conflict ? 'was changed' : 'was deleted'} since you opened it (file edit, API or another
              console). Nothing was saved.
            </p>
            ${conflict ? html`<pre>${JSON.stringify(conflict, null, 2)}</pre>` : null}
            <button type="button" onClick=${() => load(conflict ?? {})}>Discard mine, load theirs</button>
            <button type="button" onClick=${() => save(true)}>Overwrite with mine</button>
          </div>`
        : null
    }
    ${notice ? html`<p class="ok" role="status">${notice}</p>` : null}
    <div class="actions">
      <button type="submit" disabled=${invalid}>Save</button>
      <button type="button" disabled=${same(value, original)} onClick=${() => load(original)}>Revert</button>
      ${id !== undefined ? html`<button type="button" class="danger" onClick=${remove}>Delete</button>` : null}
      ${collection === 'machines' && id !== undefined ? html`<a href=${`#/machines/${id}`}>Timeline</a>` : null}
    </div>
    ${collection === 'machines' && id !== undefined ? html`<${Preview} mac=${id} />` : null}
  </form>`;
}

/** What a machine would boot: the iPXE script and cloud-config, rendered without side effects. */
function Preview({ mac }) {
  const [data, error, reload] = useLoad(() => api('GET', `/api/console/preview?mac=${encodeURIComponent(mac)}`), [mac]);
  return html`<details class="preview">
    <summary>Preview what ${mac} would boot <button type="button" onClick=${reload}>refresh</button></summary>
    <${ErrorNote} error=${error} />
    ${
      data
        ? html`<h4>iPXE script</h4>
            <pre class="ipxe">${data.ipxe.text ?? data.ipxe.error}</pre>
            <h4>cloud-config</h4>
            <pre class="cloud-config">${data.cloudConfig.text ?? data.cloudConfig.error}</pre>`
        : null
    }
  </details>`;
}

/** Appliance status: address, ports, DHCP mode and why, warnings, version. */
export function StatusPage() {
  const [s, error] = useLoad(() => api('GET', '/api/console/status'), []);
  return html`<section>
    <h2>Appliance status</h2>
    <${ErrorNote} error=${error} />
    ${
      s
        ? html`<dl class="summary">
              <dt>Version</dt>
              <dd>${s.version ?? 'unknown'}</dd>
              <dt>Address</dt>
              <dd>${s.address}${s.interface ? ` on ${s.interface}` : ''}</dd>
              <dt>Ports</dt>
              <dd>
                ${
                  s.ports
                    ? Object.entries(s.ports)
                        .map(([k, v]) => `${k} ${v || 'off'}`)
                        .join(', ')
                    : `http ${s.httpPort}`
                }
              </dd>
              <dt>DHCP</dt>
              <dd>${s.dhcp ? `${s.dhcp.mode}: ${s.dhcp.reason}` : 'unknown'}</dd>
              <dt>Database</dt>
              <dd>${s.db ?? ''} ${s.store?.ok ? 'ok' : html`<span class="error">${s.store?.error}</span>`}</dd>
              <dt>Token file</dt>
              <dd>${s.tokenFile ?? 'given with --api-token'}</dd>
            </dl>
            <h3>Warnings from start-up</h3>
            ${
              s.warnings?.length
                ? html`<ul class="warnings">
                    ${s.warnings.map((w) => html`<li>${w}</li>`)}
                  </ul>`
                : html`<p>None.</p>`
            }`
        : null
    }
  </section>`;
}

/** Assets and boot files: what each profile needs, present or missing, and how to fetch it. */
export function AssetsPage() {
  const [hash, setHash] = useState(false);
  const [report, error] = useLoad(() => api('GET', `/api/console/assets${hash ? '?sha256=1' : ''}`), [hash]);
  const fixes = report
    ? [...new Set([...report.profiles.flatMap((p) => p.files.map((f) => f.fix)), ...report.bootFiles.map((f) => f.fix)].filter(Boolean))]
    : [];
  return html`<section>
    <h2>Assets and boot files</h2>
    <${ErrorNote} error=${error} />
    ${
      fixes.length
        ? html`<div class="failure" role="alert">
            <strong>Missing files.</strong> To fix:
            <ul class="fixes">
              ${fixes.map((f) => html`<li><code>${f}</code></li>`)}
            </ul>
          </div>`
        : null
    }
    ${
      report
        ? html`<h3>What each profile boots</h3>
            <table class="list assets">
              <thead>
                <tr>
                  <th>Profile</th>
                  <th>File</th>
                  <th>Status</th>
                  <th>Size</th>
                  <th>sha256 ${hash ? null : html`<button type="button" onClick=${() => setHash(true)}>compute</button>`}</th>
                </tr>
              </thead>
              <tbody>
                ${report.profiles.flatMap((p) =>
                  p.files.map(
                    (f) =>
                      html`<tr data-profile=${p.id} class=${f.present === false ? 'failed' : ''}>
                        <td data-label="Profile">
                          <div><a href=${`#/edit/profiles/${encodeURIComponent(p.id)}`}>${p.id}</a> <small>${f.role}</small></div>
                        </td>
                        <td data-label="File" class="mono">${f.source}</td>
                        <td data-label="Status">
                          ${f.where === 'remote' ? 'fetched by the machine' : f.present ? html`<span class="ok">present</span>` : html`<span class="error">missing</span>`}
                        </td>
                        <td data-label="Size">${f.size !== undefined ? fmtBytes(f.size) : ''}</td>
                        <td data-label="sha256" class="mono hash">${f.sha256 ?? ''}</td>
                      </tr>`,
                  ),
                )}
              </tbody>
            </table>
            <h3>iPXE binaries per firmware</h3>
            ${report.bootFiles.length === 0 ? html`<p class="empty">Not known to this server.</p>` : null}
            <table class="list assets">
              <thead>
                <tr>
                  <th>Firmware</th>
                  <th>File</th>
                  <th>Found</th>
                </tr>
              </thead>
              <tbody>
                ${report.bootFiles.map(
                  (f) =>
                    html`<tr data-firmware=${f.firmware} class=${f.source === 'missing' && f.fix?.includes('fetch ipxe') ? 'failed' : ''}>
                      <td data-label="Firmware">${f.firmware}</td>
                      <td data-label="File" class="mono">${f.name}</td>
                      <td data-label="Found">
                        <div>
                          ${f.source === 'missing' ? html`<span class="error">missing</span>` : html`<span class="mono">${f.path}</span> <small>(${f.source === 'tftp-root' ? 'TFTP root' : 'system package'})</small>`}
                        </div>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
        : null
    }
  </section>`;
}
