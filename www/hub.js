// Models on Hugging Face by name: `hf:org/repo/file.gguf[@revision]` or a pasted huggingface.co `blob/` or
// `resolve/` URL, resolved through the hub's public API (CORS-enabled, no token) to what the store needs before the
// first byte: the commit the file is read at, its size and its sha256.
//
//   parseHubRef(text, endpoint?) -> { endpoint, repo, file, revision } | null
//   resolveHub(ref, { signal }) -> { url, fetchUrl, repo, file, revision, commit, size, sha256, license, gated }
//
// `url` names the model in the store (the revision as asked, e.g. `main`); `fetchUrl` is the `/resolve/` URL at the
// commit the API reported, so an unpinned model is never read from two commits. The hub answers a `/resolve/` request
// with a redirect to a signed URL on a CDN, which the browser follows; www/store.js handles that side.

export const HF_ENDPOINT = "https://huggingface.co";
const HUB_HOSTS = new Set(["huggingface.co", "hf.co", "www.huggingface.co"]);
const COMMIT = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function hubError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

const trimSlash = (s) => s.replace(/\/+$/, "");

/** A hub reference from text, or null when the text is not one. `endpoint` is where `hf:` names resolve. */
export function parseHubRef(text, endpoint = HF_ENDPOINT) {
  if (typeof text !== "string") return null;
  endpoint = trimSlash(endpoint || HF_ENDPOINT);
  const s = text.trim();
  if (s.startsWith("hf:")) {
    // hf:org/repo/path/to/file.gguf@revision
    let rest = s.slice(3).replace(/^\/+/, "");
    let revision = "main";
    const at = rest.lastIndexOf("@");
    if (at > 0) {
      revision = rest.slice(at + 1);
      rest = rest.slice(0, at);
    }
    const parts = rest.split("/");
    if (parts.length < 3 || !parts.every(Boolean)) {
      throw hubError("Unsupported", `${JSON.stringify(text)}: an hf: name is hf:org/repo/file.gguf, optionally @revision`);
    }
    return checked({ endpoint, repo: `${parts[0]}/${parts[1]}`, file: parts.slice(2).join("/"), revision }, text);
  }
  let u;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  const base = new URL(endpoint);
  const isHub = HUB_HOSTS.has(u.hostname) || u.origin === base.origin;
  if (!isHub) return null;
  // /org/repo/(blob|resolve)/revision/path/to/file
  const segments = u.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (segments.length < 5 || !["blob", "resolve"].includes(segments[2])) return null;
  const origin = u.origin === base.origin ? endpoint : HF_ENDPOINT;
  return checked(
    { endpoint: origin, repo: `${segments[0]}/${segments[1]}`, file: segments.slice(4).join("/"), revision: segments[3] },
    text,
  );
}

function checked(ref, text) {
  const [org, name] = ref.repo.split("/");
  if (!PART.test(org) || !PART.test(name) || ref.file.split("/").some((p) => !p || p === "." || p === "..")) {
    throw hubError("Unsupported", `${JSON.stringify(text)} does not name a file in a Hugging Face repository`);
  }
  if (!ref.revision || /[\s?#]/.test(ref.revision)) {
    throw hubError("Unsupported", `${JSON.stringify(text)}: the revision ${JSON.stringify(ref.revision)} is not valid`);
  }
  if (!ref.file.toLowerCase().endsWith(".gguf")) {
    throw hubError("Unsupported", `${ref.repo}/${ref.file} is not a .gguf file: gemma-web runs GGUF models`);
  }
  return ref;
}

const path = (p) => p.split("/").map(encodeURIComponent).join("/");

/** `{endpoint}/{repo}/resolve/{revision}/{file}` */
export function resolveUrl({ endpoint, repo, file }, revision) {
  return `${endpoint}/${path(repo)}/resolve/${encodeURIComponent(revision)}/${path(file)}`;
}

/** GET of a hub API URL as JSON, with a few bounded retries on 429 and 5xx (honouring Retry-After). */
async function apiJson(url, what, signal) {
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(url, { signal, headers: { Accept: "application/json" } });
    } catch (e) {
      if (signal?.aborted) throw hubError("Aborted", "aborted");
      if (attempt < 3) {
        await sleep(attempt, signal);
        continue;
      }
      throw hubError("Network", `could not reach ${new URL(url).host} for ${what}: ${e.message}`);
    }
    if (res.ok) {
      try {
        return await res.json();
      } catch (e) {
        throw hubError("Network", `${url}: not JSON (${e.message})`);
      }
    }
    if ((res.status === 429 || res.status >= 500) && attempt < 3) {
      await sleep(Number(res.headers.get("Retry-After")) || attempt, signal);
      continue;
    }
    if (res.status === 401 || res.status === 403) {
      throw hubError("Unsupported", `${what} is gated or private (HTTP ${res.status}); gemma-web downloads without a ` +
        "token, so use an ungated upload of the model");
    }
    if (res.status === 404) throw hubError("Unsupported", `${what} was not found on ${new URL(url).host}`);
    throw hubError("Network", `${url}: HTTP ${res.status}`);
  }
}

function sleep(seconds, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, Math.min(30, Math.max(0, seconds)) * 1000);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(hubError("Aborted", "aborted"));
    }, { once: true });
  });
}

/**
 * The commit, size, sha256 and license of a hub file, from the model API (the commit the revision points at now) and
 * the tree API (each file's `size` and `lfs.oid`, its sha256). A pinned commit stays as it is.
 */
export async function resolveHub(ref, { signal } = {}) {
  const { endpoint, repo, file, revision } = ref;
  const api = `${endpoint}/api/models/${path(repo)}`;
  const info = await apiJson(revision === "main" ? api : `${api}/revision/${encodeURIComponent(revision)}`,
    `the repository ${repo}`, signal);
  if (info?.gated && info.gated !== false) {
    throw hubError("Unsupported", `${repo} is gated (it asks for a login); gemma-web downloads without a token, so ` +
      "use an ungated upload of the model");
  }
  const commit = String(info?.sha ?? "");
  if (!COMMIT.test(commit)) throw hubError("Network", `the hub gave no commit for ${repo}@${revision}`);
  if (COMMIT.test(revision) && commit !== revision) {
    throw hubError("Network", `the hub resolved the commit ${revision} of ${repo} to ${commit}`);
  }
  const slash = file.lastIndexOf("/");
  const dir = slash < 0 ? "" : `/${path(file.slice(0, slash))}`;
  const tree = await apiJson(`${api}/tree/${commit}${dir}`, `the files of ${repo}`, signal);
  const entry = Array.isArray(tree) ? tree.find((e) => e?.path === file && e?.type === "file") : null;
  if (!entry) throw hubError("Unsupported", `${repo} has no file ${file} at ${revision} (${commit.slice(0, 8)})`);
  const sha256 = String(entry.lfs?.oid ?? "").toLowerCase();
  const size = Number(entry.lfs?.size ?? entry.size);
  if (!SHA256.test(sha256)) {
    throw hubError("Unsupported", `the hub lists no sha256 for ${repo}/${file} (not stored with LFS), so it cannot be ` +
      "verified");
  }
  if (!Number.isSafeInteger(size) || size <= 0) throw hubError("Network", `the hub gave no size for ${repo}/${file}`);
  const license = info?.cardData?.license ?? info?.tags?.find?.((t) => t.startsWith("license:"))?.slice(8) ?? null;
  return {
    url: resolveUrl(ref, revision),
    fetchUrl: resolveUrl(ref, commit),
    repo,
    file,
    revision,
    commit,
    size,
    sha256,
    license,
  };
}
