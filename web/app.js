// The console's shell: login with the API token (kept in sessionStorage for this tab only),
// hash routing between the pages, and logout. Pages live in views.js.
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';
import { api, token } from './api.js';
import { AssetsPage, EditorPage, MachinesPage, StatusPage, TimelinePage } from './views.js';

const html = htm.bind(h);
const root = document.getElementById('app');
const tokenFile = root.dataset.tokenFile;

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function Login({ onLogin, message }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    token.set(value.trim());
    try {
      await api('GET', '/api/console/status');
      onLogin();
    } catch (err) {
      token.clear();
      setError(err.status === 401 ? 'That token was refused. Copy it again from the token file.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <h1>netboot-appliance</h1>
    <form onSubmit=${submit}>
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" required value=${value} onInput=${(e) => setValue(e.target.value)} />
      <p class="hint">
        The token is in <code class="token-file">${tokenFile}</code> on the appliance (readable by root only). It is kept in this browser tab until you log out
        or close it.
      </p>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy || value.trim() === ''}>Log in</button>
    </form>
  </main>`;
}

function Page({ hash }) {
  const parts = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (parts[0] === 'machines' && parts[1]) return html`<${TimelinePage} mac=${parts[1]} />`;
  if (parts[0] === 'edit') return html`<${EditorPage} collection=${parts[1] ?? 'profiles'} id=${parts[2]} />`;
  if (parts[0] === 'status') return html`<${StatusPage} />`;
  if (parts[0] === 'assets') return html`<${AssetsPage} />`;
  return html`<${MachinesPage} />`;
}

function App() {
  const [authed, setAuthed] = useState(Boolean(token.get()));
  const [message, setMessage] = useState(null);
  const hash = useHash();
  useEffect(() => {
    const on = () => {
      token.clear();
      setMessage('Your token is no longer accepted; log in again.');
      setAuthed(false);
    };
    window.addEventListener('netboot:unauthorized', on);
    return () => window.removeEventListener('netboot:unauthorized', on);
  }, []);
  if (!authed) return html`<${Login} message=${message} onLogin=${() => setAuthed(true)} />`;
  const [first, second] = hash.replace(/^#\/?/, '').split('/');
  const section = first === 'edit' ? `edit-${second || 'profiles'}` : first || 'machines';
  const tab = (href, label, name) => html`<a href=${href} aria-current=${section === name ? 'page' : undefined}>${label}</a>`;
  return html`<div class="shell">
    <header>
      <h1>netboot-appliance</h1>
      <nav aria-label="main">
        ${tab('#/machines', 'Machines', 'machines')} ${tab('#/edit/profiles', 'Profiles', 'edit-profiles')} ${tab('#/edit/groups', 'Groups', 'edit-groups')}
        ${tab('#/edit/machines', 'Machine records', 'edit-machines')} ${tab('#/assets', 'Assets', 'assets')} ${tab('#/status', 'Status', 'status')}
      </nav>
      <button
        type="button"
        class="logout"
        onClick=${() => {
          token.clear();
          setMessage(null);
          setAuthed(false);
        }}
      >
        Log out
      </button>
    </header>
    <main><${Page} hash=${hash} /></main>
  </div>`;
}

render(html`<${App} />`, root);
