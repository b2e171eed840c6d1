// A local stand-in for Hugging Face as it is documented to behave, on two origins (two ports of 127.0.0.1):
//
// - the hub: the model API (`/api/models/{repo}`, `/revision/{rev}`: the commit `sha`, `gated`, the card's license),
//   the tree API (`/api/models/{repo}/tree/{rev}[/{dir}]`: each file's `size` and `lfs.oid`, its sha256), and
//   `/{repo}/resolve/{rev}/{file}`, which answers 302 to a signed URL on the CDN with X-Linked-Size, X-Linked-Etag and
//   X-Repo-Commit (headers a page cannot read: the browser follows the redirect first). Gated repositories answer 401.
// - the CDN: signed URLs (`X-Amz-Expires=3600`) that answer 403 once expired, Range requests (206 + Content-Range), an
//   ETag that is not the sha256 and changes from one response to the next, and the CORS header sets Hugging Face staff
//   published: `Access-Control-Allow-Origin: *`, exposed `Accept-Ranges, Content-Range, Content-Type,
//   Content-Disposition, ETag, X-Cache`, and a preflight that allows only `Content-Range, Content-Type,
//   Content-Disposition, ETag`: a request with If-Range (or any custom header) fails there.
//
// Faults, set on `faults` at any time: `resolve429` (that many /resolve/ requests answered 429 with Retry-After,
// which the stand-in exposes to the page; the client has its own back-off where a host does not), `cdn503At` (the
// CDN GET with this number, counting from 1, is answered 503), `dropAt` (the first CDN response that reaches this
// file offset sends the bytes before it, then the connection is cut), `stallAt` (the same, but the connection then
// hangs), `expireAfter` (after that many CDN GETs, every URL signed so far has expired), `ignoreRanges` (the CDN
// answers 200 with the whole file). Every request is logged: { host: "hub" | "cdn", method, path, range, ifRange,
// status, bytes }.
import { createHmac, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";

const CDN_EXPOSE = "Accept-Ranges, Content-Range, Content-Type, Content-Disposition, ETag, X-Cache";
const CDN_ALLOW_HEADERS = "Content-Range, Content-Type, Content-Disposition, ETag";
const HUB_EXPOSE = "X-Repo-Commit, X-Request-Id, X-Error-Code, X-Error-Message, X-Total-Count, ETag, Link, " +
  "Accept-Ranges, Content-Range, X-Linked-Size, X-Linked-ETag, Retry-After";

/**
 * `repos`: { "org/name": { commit, license?, gated?, files: { "path.gguf": { disk, sha256, apiSha256? } } } }
 * (`apiSha256`: what the tree API claims, to test a lying or stale listing). Resolves with
 * { hub, cdn, log, faults, repos, close() }.
 */
export async function startHfStandIn(repos) {
  const log = [];
  const faults = { resolve429: 0, retryAfter: 1, cdn503At: null, dropAt: null, stallAt: null, expireAfter: null, ignoreRanges: false,
    // The hub unreachable (offline, an outage): every request to it has its connection cut.
    hubDown: false };
  const secret = randomBytes(16);
  let cdnGets = 0;
  let signed = 0; // URLs signed so far (each has its serial number)
  let expiredUpTo = 0; // URLs with a serial up to this one have expired
  for (const repo of Object.values(repos)) {
    for (const f of Object.values(repo.files)) f.size ??= (await stat(f.disk)).size;
  }
  const sign = (path, date, n) => createHmac("sha256", secret).update(`${path}\n${date}\n${n}`).digest("hex");

  const json = (res, status, body, extra = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": "application/json; charset=utf-8",
      "Content-Length": Buffer.byteLength(text),
      "Access-Control-Allow-Origin": "*",
      "Access-Control-Expose-Headers": HUB_EXPOSE,
      ...extra,
    });
    res.end(text);
    return text.length;
  };

  function repoInfo(name, repo) {
    return {
      id: name,
      modelId: name,
      sha: repo.commit,
      private: false,
      gated: repo.gated ?? false,
      tags: ["gguf", ...(repo.license ? [`license:${repo.license}`] : [])],
      cardData: repo.license ? { license: repo.license } : {},
      siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })),
    };
  }

  const hub = http.createServer((req, res) => {
    const entry = { host: "hub", method: req.method, path: req.url, range: req.headers.range ?? null,
      ifRange: "if-range" in req.headers, status: 0, bytes: 0 };
    log.push(entry);
    const u = new URL(req.url, "http://hub");
    const parts = u.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (req.method === "OPTIONS") {
      entry.status = 204;
      res.writeHead(204, {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Range, If-Range, Accept",
      });
      return res.end();
    }
    if (faults.hubDown) {
      entry.status = "cut";
      return req.socket.destroy();
    }
    if (parts[0] === "api" && parts[1] === "models") {
      const name = `${parts[2]}/${parts[3]}`;
      const repo = repos[name];
      if (!repo) return (entry.status = 404, entry.bytes = json(res, 404, { error: "Repository not found" }));
      if (repo.gated) {
        entry.status = 401;
        entry.bytes = json(res, 401, { error: `Access to model ${name} is restricted. You must be authenticated.` });
        return;
      }
      const rev = parts[4] === "revision" || parts[4] === "tree" ? parts[5] : "main";
      if (rev !== "main" && rev !== repo.commit) {
        return (entry.status = 404, entry.bytes = json(res, 404, { error: `Invalid rev id: ${rev}` }));
      }
      if (parts[4] === "tree") {
        const dir = parts.slice(6).join("/");
        const listed = Object.entries(repo.files)
          .filter(([p]) => (p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "") === dir)
          .map(([path, f]) => ({
            type: "file",
            oid: createHmac("sha1", "git").update(path).digest("hex"),
            size: f.size,
            path,
            lfs: { oid: f.apiSha256 ?? f.sha256, size: f.size, pointerSize: 135 },
          }));
        entry.status = 200;
        entry.bytes = json(res, 200, listed);
        return;
      }
      entry.status = 200;
      entry.bytes = json(res, 200, repoInfo(name, repo));
      return;
    }
    // /{org}/{repo}/resolve/{rev}/{path}
    if (parts[2] === "resolve" && parts.length >= 5 && (req.method === "GET" || req.method === "HEAD")) {
      const name = `${parts[0]}/${parts[1]}`;
      const repo = repos[name];
      const rev = parts[3];
      const path = parts.slice(4).join("/");
      const file = repo?.files[path];
      if (!repo || !file || (rev !== "main" && rev !== repo.commit)) {
        entry.status = 404;
        entry.bytes = json(res, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
        return;
      }
      if (repo.gated) return (entry.status = 401, entry.bytes = json(res, 401, { error: "gated" }));
      if (faults.resolve429 > 0) {
        faults.resolve429 -= 1;
        entry.status = 429;
        entry.bytes = json(res, 429, { error: "Too many requests" }, { "Retry-After": String(faults.retryAfter) });
        return;
      }
      const date = Date.now();
      const n = ++signed;
      const cdnPath = `/repos/${file.sha256.slice(0, 2)}/${file.sha256}`;
      const q = new URLSearchParams({
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Date": String(date),
        "X-Amz-Expires": "3600",
        "X-Amz-Signature": sign(cdnPath, date, n),
        "x-id": String(n),
        "response-content-disposition": `inline; filename*=UTF-8''${path.split("/").pop()}`,
      });
      entry.status = 302;
      res.writeHead(302, {
        Location: `${standIn.cdn}${cdnPath}?${q}`,
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": HUB_EXPOSE,
        "X-Linked-Size": String(file.size),
        "X-Linked-Etag": `"${file.sha256}"`,
        "X-Repo-Commit": repo.commit,
        "Content-Length": "0",
      });
      return res.end();
    }
    entry.status = 404;
    entry.bytes = json(res, 404, { error: "not found" });
  });

  const files = () => new Map(Object.values(repos).flatMap((r) => Object.values(r.files)).map((f) => [f.sha256, f]));

  const cdn = http.createServer((req, res) => {
    const entry = { host: "cdn", method: req.method, path: req.url, range: req.headers.range ?? null,
      ifRange: "if-range" in req.headers, status: 0, bytes: 0 };
    log.push(entry);
    const cors = { "Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": CDN_EXPOSE };
    const fail = (status, text) => {
      entry.status = status;
      res.writeHead(status, { ...cors, "Content-Type": "application/xml", "Content-Length": Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.method === "OPTIONS") {
      // The published preflight answer: If-Range and custom headers are not allowed, so such a request fails.
      entry.status = 200;
      entry.preflightHeaders = req.headers["access-control-request-headers"] ?? "";
      res.writeHead(200, {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": CDN_ALLOW_HEADERS,
        "Access-Control-Max-Age": "3000",
      });
      return res.end();
    }
    const u = new URL(req.url, "http://cdn");
    const file = files().get(u.pathname.split("/").pop());
    const date = Number(u.searchParams.get("X-Amz-Date"));
    const n = Number(u.searchParams.get("x-id"));
    if (!file || u.searchParams.get("X-Amz-Signature") !== sign(u.pathname, date, n)) {
      return fail(403, "<Error><Code>AccessDenied</Code></Error>");
    }
    if (req.method === "GET") cdnGets += 1;
    if (faults.expireAfter !== null && cdnGets > faults.expireAfter) {
      faults.expireAfter = null;
      expiredUpTo = signed;
    }
    const expires = Number(u.searchParams.get("X-Amz-Expires"));
    if (n <= expiredUpTo || Date.now() > date + expires * 1000) {
      return fail(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>");
    }
    if (req.method === "GET" && faults.cdn503At === cdnGets) {
      faults.cdn503At = null;
      return fail(503, "<Error><Code>SlowDown</Code></Error>");
    }
    const headers = {
      ...cors,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      "Content-Disposition": u.searchParams.get("response-content-disposition") ?? "inline",
      // Not the sha256, and different from one response (node) to the next.
      ETag: `"${randomBytes(8).toString("hex")}"`,
      "X-Cache": Math.random() < 0.5 ? "Hit from cloudfront" : "Miss from cloudfront",
    };
    let start = 0;
    let end = file.size - 1;
    let status = 200;
    const range = faults.ignoreRanges ? undefined : req.headers.range;
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= file.size || (m[2] && Number(m[2]) < Number(m[1]))) {
        entry.status = 416;
        res.writeHead(416, { ...cors, "Content-Range": `bytes */${file.size}` });
        return res.end();
      }
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), file.size - 1) : file.size - 1;
      status = 206;
      headers["Content-Range"] = `bytes ${start}-${end}/${file.size}`;
    }
    headers["Content-Length"] = String(end - start + 1);
    entry.status = status;
    res.writeHead(status, headers);
    if (req.method === "HEAD") return res.end();
    const cutAt = (at) => (at !== null && at > start && at <= end ? at : null);
    const drop = cutAt(faults.dropAt);
    if (drop !== null) faults.dropAt = null;
    const stall = drop === null ? cutAt(faults.stallAt) : null;
    if (stall !== null) faults.stallAt = null;
    const last = drop ?? stall;
    const stream = createReadStream(file.disk, { start, end: last === null ? end : last - 1 });
    stream.on("data", (b) => {
      entry.bytes += b.length;
      if (!res.write(b)) {
        stream.pause();
        res.once("drain", () => stream.resume());
      }
    });
    stream.on("end", () => {
      if (last === null) return res.end();
      if (stall !== null) {
        // The connection hangs: nothing more comes until the client goes away.
        entry.stalled = true;
        return;
      }
      // The connection drops in the middle of the body.
      entry.dropped = true;
      res.socket?.destroy();
    });
    res.on("close", () => stream.destroy());
  });

  const listen = (server) => new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
  const standIn = {
    hub: `http://127.0.0.1:${await listen(hub)}`,
    cdn: `http://127.0.0.1:${await listen(cdn)}`,
    log,
    faults,
    repos,
    close: () => Promise.all([hub, cdn].map((s) => new Promise((r) => (s.closeAllConnections?.(), s.close(r))))),
  };
  return standIn;
}

/** Model body bytes the CDN sent, from log entries. */
export const cdnBytes = (entries) => entries.filter((e) => e.host === "cdn" && e.method === "GET").reduce((n, e) => n + e.bytes, 0);
