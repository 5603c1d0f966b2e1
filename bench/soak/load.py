#!/usr/bin/env python3
"""Mixed load against a running `unclip serve` (see soak.sh), with per-minute samples of the server's RSS and fds."""
import argparse, base64, json, os, random, threading, time, urllib.error, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("--minutes", type=float, default=30)
ap.add_argument("--out", required=True)
args = ap.parse_args()
BASE = f"http://127.0.0.1:{args.port}"
stop = threading.Event()
lock = threading.Lock()
stats = {"requests": 0, "by_status": {}, "unexpected_5xx": [], "model_errors": [], "malformed_not_4xx": [], "jobs": set(), "cancelled": 0, "errors": []}


def request(method, path, body=None, headers=None, timeout=120):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    except Exception as e:  # connection refused/reset: the server must never do that
        with lock:
            stats["errors"].append(f"{method} {path}: {e!r}")
        return None, b""
    with lock:
        stats["requests"] += 1
        stats["by_status"][str(status)] = stats["by_status"].get(str(status), 0) + 1
        if status >= 500 and b"the model produced non-finite values" in payload:
            # The job ran and the model's numbers blew up (a clean error, as A1111 answers it): counted apart.
            stats["model_errors"].append(f"{method} {path} -> {status}")
        elif status >= 500:
            stats["unexpected_5xx"].append(f"{method} {path} -> {status}: {payload[:200]!r}")
    return status, payload


def submit(spec):
    status, payload = request("POST", "/api/jobs", spec)
    if status == 202:
        job = json.loads(payload)["id"]
        with lock:
            stats["jobs"].add(job)
        return job
    return None


def generator():
    prompts = ["a red circle", "a blue square on green", "two yellow triangles", "a small purple star", "shapes"]
    while not stop.is_set():
        kind = random.random()
        if kind < 0.6:
            submit({"kind": "text-to-image", "prompt": random.choice(prompts), "steps": random.randint(2, 6),
                    "prior_steps": random.randint(2, 5), "count": random.randint(1, 2), "seed": random.randint(-1, 10**6)})
        elif kind < 0.8:
            # A1111 txt2img answers when its job ends: a long request, its job counted through the header.
            status, _ = request("POST", "/sdapi/v1/txt2img", {"prompt": random.choice(prompts), "steps": 3, "width": 64, "height": 64,
                                                               "sampler_name": "Euler a"}, timeout=600)
        else:
            status, _ = request("POST", "/v1/images/generations", {"prompt": random.choice(prompts), "n": 1, "response_format": "b64_json"},
                                timeout=600)
        stop.wait(random.uniform(1, 4))


def gallery():
    while not stop.is_set():
        status, payload = request("GET", f"/api/generations?limit={random.randint(1, 50)}")
        ids = [g["id"] for g in json.loads(payload).get("generations", [])] if status == 200 else []
        for i in random.sample(ids, min(3, len(ids))):
            request("GET", f"/api/generations/{i}")
            request("GET", f"/api/generations/{i}/thumbnail")
            request("GET", f"/api/generations/{i}/image")
        request("GET", "/api/queue")
        request("GET", "/sdapi/v1/progress")
        request("GET", "/")
        stop.wait(0.2)


def searcher():
    while not stop.is_set():
        request("POST", "/api/search", {"text": random.choice(["circle", "square", "red", "star"]), "limit": 10})
        status, payload = request("GET", "/api/generations?limit=5")
        ids = [g["id"] for g in json.loads(payload).get("generations", [])] if status == 200 else []
        if ids:
            request("POST", "/api/search", {"like": random.choice(ids), "limit": 5})
        stop.wait(0.5)


def canceller():
    while not stop.is_set():
        job = submit({"kind": "text-to-image", "prompt": "to be cancelled", "steps": 20, "prior_steps": 5})
        stop.wait(random.uniform(0.1, 3))
        if job is not None:
            status, _ = request("DELETE", f"/api/jobs/{job}")
            if status == 200:
                with lock:
                    stats["cancelled"] += 1
        stop.wait(random.uniform(2, 6))


def malformed_requests():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(40)).decode()
    yield "POST", "/api/jobs", b"{not json", None
    yield "POST", "/api/jobs", b"", None
    yield "POST", "/api/jobs", b"[1,2,3]", None
    yield "POST", "/api/jobs", json.dumps({"kind": "text-to-image", "prompt": 5}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "text-to-image", "prompt": "x", "bogus": 1}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "text-to-image", "prompt": "x", "width": 2**62, "height": 4}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "text-to-image", "prompt": "x", "steps": 10**30}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "edit", "prompt": "x", "image": png}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "edit", "prompt": "x", "image": "!!!not base64"}).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "variation", "id": 10**12}).encode(), None
    yield "POST", "/api/jobs", ("[" * 5000 + "]" * 5000).encode(), None
    yield "POST", "/api/jobs", json.dumps({"kind": "text-to-image", "prompt": "p" * 200_000}).encode(), None
    yield "POST", "/sdapi/v1/txt2img", json.dumps({"prompt": "x", "batch_size": 2**62, "n_iter": 4}).encode(), None
    yield "POST", "/sdapi/v1/img2img", json.dumps({"prompt": "x", "init_images": [png]}).encode(), None
    yield "POST", "/sdapi/v1/png-info", json.dumps({"image": png}).encode(), None
    yield "POST", "/v1/images/variations", b"--b\r\nbroken", {"Content-Type": "multipart/form-data; boundary=b"}
    yield "POST", "/v1/images/variations", b"x", {"Content-Type": "text/plain"}
    yield "POST", "/api/search", json.dumps({"text": "a", "like": 1}).encode(), None
    yield "GET", "/api/generations/notanumber", None, None
    yield "GET", "/api/jobs/99999999", None, None
    yield "DELETE", "/api/jobs/-1", None, None
    yield "GET", "/api/generations?limit=-5", None, None


def malformed():
    cases = list(malformed_requests())
    while not stop.is_set():
        method, path, body, headers = random.choice(cases)
        mutated = body is not None and random.random() < 0.3
        if mutated:
            b = bytearray(body)
            for _ in range(random.randint(1, 4)):
                if b:
                    b[random.randrange(len(b))] = random.randrange(256)
            body = bytes(b)
        status, payload = request(method, path, body, headers)
        # A mutated body may have become a valid request (A1111's routes ignore unknown fields): it must not be a 5xx.
        if status is not None and not (400 <= status < 500) and not (mutated and status < 500):
            with lock:
                stats["malformed_not_4xx"].append(f"{method} {path} {body[:80] if body else b''!r} -> {status}")
        stop.wait(0.3)


def fd_kinds():
    """What the server's descriptors are, by kind (sockets, event fds, each file): says what grew, if anything did."""
    kinds = {}
    for fd in os.listdir(f"/proc/{args.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{args.pid}/fd/{fd}")
        except OSError:
            continue
        key = target.split("[")[0] if ("[" in target) else target
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def sample():
    try:
        with open(f"/proc/{args.pid}/status") as f:
            status = {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("VmRSS:", "RssAnon:", "RssFile:"))}
        rss = int(status["VmRSS"])
        # Anonymous (heap: a leak shows here) apart from file-backed (the binary, the store's mapped pages).
        return {"t": round(time.time() - start), "rss_kb": rss, "rss_anon_kb": int(status.get("RssAnon", 0)),
                "rss_file_kb": int(status.get("RssFile", 0)), "fds": len(os.listdir(f"/proc/{args.pid}/fd")), "fd_kinds": fd_kinds()}
    except (FileNotFoundError, ProcessLookupError):
        return {"t": round(time.time() - start), "rss_kb": 0, "fds": 0, "exited": True}


start = time.time()
threads = [threading.Thread(target=f, daemon=True) for f in (generator, gallery, searcher, canceller, malformed)]
for t in threads:
    t.start()
samples = [sample()]
print(f"t=0s rss={samples[0]['rss_kb'] // 1024} MiB fds={samples[0]['fds']}", flush=True)
deadline = start + args.minutes * 60
while time.time() < deadline:
    time.sleep(min(60, max(0, deadline - time.time())))
    s = sample()
    samples.append(s)
    with lock:
        print(f"t={s['t']}s rss={s['rss_kb'] // 1024} MiB (anon {s['rss_anon_kb'] // 1024}, file {s['rss_file_kb'] // 1024}) fds={s['fds']} requests={stats['requests']} jobs={len(stats['jobs'])}", flush=True)
stop.set()
for t in threads:
    t.join(timeout=620)

# Let the queue drain (cancel what is left so the end is bounded), then check every accepted job ended.
for _ in range(600):
    status, payload = request("GET", "/api/queue")
    q = json.loads(payload) if status == 200 else {"running": [], "queued": []}
    if not q["running"] and not q["queued"]:
        break
    for j in q["queued"]:
        request("DELETE", f"/api/jobs/{j['id']}")
    time.sleep(1)
time.sleep(5)  # connections the last requests used close on the server's side
final = sample()
ended = {}
for job in sorted(stats["jobs"]):
    status, payload = request("GET", f"/api/jobs/{job}")
    ended[job] = json.loads(payload)["status"] if status == 200 else f"HTTP {status}"
unfinished = {j: s for j, s in ended.items() if s not in ("done", "cancelled")}

warm = samples[min(2, len(samples) - 1)]  # after two minutes of load
late = samples[-1]
rss_change = (late["rss_kb"] - warm["rss_kb"]) / max(1, warm["rss_kb"])
half = samples[len(samples) // 2]
rss_change_second_half = (late["rss_kb"] - half["rss_kb"]) / max(1, half["rss_kb"])
# Descriptors: connections in flight come and go, and the SQLite store's pool of idle readers (at most 4) fills as
# concurrency peaks, in the soak of session 9 at minute 4. Growth means the second half's samples above the most
# seen in the first half, or the idle count after the run above it (the first three samples alone, the earlier
# rule, end before the pool is full).
warm_fds = max(s["fds"] for s in samples[:4])
first_half_fds = max(s["fds"] for s in samples[:len(samples) // 2 + 1])
second_half_fds = max(s["fds"] for s in samples[len(samples) // 2 + 1:] or [samples[-1]])
exited = any(s.get("exited") for s in samples + [final])
checks = {
    "server stayed up": not exited,
    "every job ended": not unfinished,
    "no unexpected 5xx": not stats["unexpected_5xx"],
    "malformed requests got 4xx": not stats["malformed_not_4xx"],
    "no connection errors": not stats["errors"],
    "rss within ±10% of post-warm-up": abs(rss_change) <= 0.10,
    # Busy samples count open connections too; once the load has stopped, the idle count must not exceed the busy one.
    "no fd growth": not exited and final["fds"] <= first_half_fds and second_half_fds <= first_half_fds,
}
report = {"minutes": args.minutes, "samples": samples, "final": final, "requests": stats["requests"], "by_status": stats["by_status"],
          "jobs": len(stats["jobs"]), "job_status": {s: list(ended.values()).count(s) for s in set(ended.values())},
          "cancelled_by_client": stats["cancelled"], "model_errors": len(stats["model_errors"]), "rss_change_vs_warm": round(rss_change, 4),
          "rss_change_second_half": round(rss_change_second_half, 4), "fds_warm_max": warm_fds, "fds_first_half_max": first_half_fds,
          "fds_second_half_max": second_half_fds, "fds_idle_after": final["fds"], "checks": checks,
          "unexpected_5xx": stats["unexpected_5xx"][:20], "malformed_not_4xx": stats["malformed_not_4xx"][:20],
          "errors": stats["errors"][:20], "unfinished": unfinished}
json.dump(report, open(args.out, "w"), indent=1)
print(json.dumps({k: report[k] for k in ("requests", "by_status", "jobs", "job_status", "cancelled_by_client", "model_errors",
                                          "rss_change_vs_warm", "rss_change_second_half", "fds_warm_max", "fds_first_half_max", "fds_second_half_max",
                                          "fds_idle_after", "checks")}, indent=1))
print("descriptors idle after the run:", json.dumps(final.get("fd_kinds", {})))
for k in ("unexpected_5xx", "malformed_not_4xx", "errors"):
    for line in report[k]:
        print(f"{k}: {line}")
print("soak:", "PASS" if all(checks.values()) else "FAIL", f"(report: {args.out})")
raise SystemExit(0 if all(checks.values()) else 1)
