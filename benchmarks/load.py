"""Load on the launched demo: many clients mixing analyze and chat, then memory after N analyses.

Launches ``python app.py --model tiny-random`` on a free port and drives it over plain HTTP
(upload, then ``/gradio_api/call/analyze`` or ``/gradio_api/call/chat``), the way any
client can: ``--clients`` threads for ``--seconds``, each request on an image of its own
(a different generated picture every time), about one chat in three. Then analyses alone
until ``--analyses`` in all, and the server's resident memory (VmRSS) is read.

Every result is checked against its own image afterwards: the rho and the kept-per-group
the server reported must be those the same model computes for that picture here.

    python benchmarks/load.py [--clients 20] [--seconds 60] [--analyses 300]

``--switchers K`` measures the model policy instead: one ordinary visitor analyzing on the
start-up model while K other clients switch between two other built-ins (as often as the
switch limit allows) and analyze on theirs, under the local policy (one model loaded:
each switch evicts the ordinary visitor's model) and under the hosted one
(``PRUNESID_PUBLIC=1``: every listed model resident). The ordinary visitor's latency and
the server's model loads are compared.

With ``--attacks`` it measures instead what hostile clients cost an ordinary visitor (one
analysis every 2 s from its own address, timed throughout): for each attack in
:data:`ATTACKS` the visitor's median and maximum latency and refusals, and the app's peak
memory growth. ``--root DIR`` launches the app.py of another checkout (an older commit,
for "before" numbers); the attacks speak plain HTTP and work on either.

    python benchmarks/load.py --attacks [--root /tmp/before] [--attack-seconds 20]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import scene  # noqa: E402

META = {"_type": "gradio.FileData"}
CONTROLS = [64, 0, 0, "psca", False]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(port: int, log_path: Path, root: Path = ROOT, **extra_env) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PRUNESID_MODEL", "GRADIO_SERVER_NAME", "PRUNESID_PUBLIC", "PRUNESID_SERVE", "SYSTEM")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONPATH=str(root), **extra_env)
    log = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "app.py", "--model", "tiny-random", "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with {server.returncode}; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"app.py did not answer within 180 s; see {log_path}")
            time.sleep(0.5)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def picture(seed: int) -> bytes:
    buffer = io.BytesIO()
    scene(360 + seed % 97 * 3, 300 + seed % 53 * 3, seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


class Client:
    """One visitor. Each has an address of its own (the app trusts X-Forwarded-For from
    loopback, as from a reverse proxy): the app's per-client queue share would otherwise
    count twenty visitors on this machine as one."""

    def __init__(self, url: str, address: str, session: str | None = None):
        self.url = url
        self.session = session  # a session of its own: a model choice is a session's
        self.http = httpx.Client(timeout=300, headers={"X-Forwarded-For": address})

    def upload(self, data: bytes, name: str) -> str:
        response = self.http.post(self.url + "gradio_api/upload", files={"files": (name, data, "image/png")})
        response.raise_for_status()
        return response.json()[0]

    def call(self, endpoint: str, data: list) -> list:
        body = {"data": data, **({"session_hash": self.session} if self.session else {})}
        response = self.http.post(self.url + f"gradio_api/call/{endpoint}", json=body)
        response.raise_for_status()
        event_id = response.json()["event_id"]
        event, payload = None, None
        with self.http.stream("GET", self.url + f"gradio_api/call/{endpoint}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = line[5:].strip()
                    if event in ("complete", "error"):
                        break
        if event != "complete":
            raise RuntimeError(f"{endpoint}: {event}: {payload}")
        return json.loads(payload)

    def analyze(self, path: str) -> dict:
        return self.call("analyze", [{"path": path, "meta": META}] + CONTROLS)[4]

    def chat(self, path: str, question: str) -> dict:
        history, info, stats, _ = self.call("chat", [question, [], {"path": path, "meta": META}] + CONTROLS)
        if [turn["role"] for turn in history] != ["user", "assistant"] or question not in json.dumps(history[0]):
            raise RuntimeError(f"chat: the history does not hold the question: {history}")
        if "64 visual tokens" not in info:
            raise RuntimeError(f"chat: unexpected reply info {info!r}")
        return stats


def run(url: str, pid: int, clients: int = 20, seconds: float = 60.0, analyses: int = 300, chat_share: float = 0.33) -> dict:
    """Drive the app at ``url`` (server process ``pid``); returns the measurements."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    results: list[dict] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def work(index: int, only_analyze: bool, until) -> None:
        client = Client(url, f"198.51.{100 + index // 250}.{index % 250 + 1}")
        rng = random.Random(index)
        while until():
            with lock:
                seed = next(counter)
            kind = "analyze" if only_analyze or rng.random() >= chat_share else "chat"
            try:
                path = client.upload(picture(seed), f"load-{seed}.png")
                start = time.perf_counter()
                stats = client.analyze(path) if kind == "analyze" else client.chat(path, f"What is in picture {seed}?")
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    results.append({"kind": kind, "seed": seed, "ms": elapsed, "rho": stats["rho"], "kept_per_group": stats["kept_per_group"]})
            except Exception as error:  # counted, reported
                with lock:
                    errors.append(f"{kind} #{seed}: {error}")

    rss_start = resident_mb(pid)
    threads = [threading.Thread(target=work, args=(i, False, lambda: time.monotonic() < stop_at)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mixed_seconds = time.monotonic() - started
    mixed = len(results)

    def more_analyses() -> bool:
        with lock:
            return sum(1 for r in results if r["kind"] == "analyze") < analyses and len(errors) < 10

    samples: list[tuple[int, float]] = []  # (analyses so far, resident MB), once a second
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(1.0):
            with lock:
                done = sum(1 for r in results if r["kind"] == "analyze")
            samples.append((done, round(resident_mb(pid), 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=work, args=(clients + i, True, more_analyses)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sampling.set()
    rss_end = resident_mb(pid)

    mismatches = check(results)
    by_kind = {}
    for kind in ("analyze", "chat"):
        times = [r["ms"] for r in results[:mixed] if r["kind"] == kind]
        by_kind[kind] = {
            "requests": len(times),
            "p50_ms": round(statistics.median(times), 1) if times else None,
            "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))], 1) if times else None,
        }
    return {
        "clients": clients,
        "seconds": round(mixed_seconds, 1),
        "mixed_requests": mixed,
        "requests_per_s": round(mixed / mixed_seconds, 2),
        "by_kind": by_kind,
        "analyses": sum(1 for r in results if r["kind"] == "analyze"),
        "requests": len(results),
        "distinct_images": len({r["seed"] for r in results}),
        "errors": errors,
        "mismatches": mismatches,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_samples": samples[:: max(1, len(samples) // 12)],
    }


SWITCH_MODELS = ("tiny-random-next", "tiny-random-qwen2-vl")


def switching(url: str, switchers: int, seconds: float) -> dict:
    """One ordinary visitor's analyze latency while ``switchers`` clients alternate between
    :data:`SWITCH_MODELS`, a switch every 5 s each (the limit: 12 a minute), analyzing on
    their model in between."""
    stop_at = time.monotonic() + seconds
    ordinary: list[float] = []
    errors: list[str] = []
    image = picture(7)

    def visitor() -> None:
        client = Client(url, "198.51.100.1", session="ordinary-visitor")
        path = client.upload(image, "ordinary.png")
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                client.analyze(path)
                ordinary.append((time.perf_counter() - start) * 1000)
            except Exception as error:
                errors.append(f"ordinary: {error}")
            time.sleep(0.2)

    def switcher(index: int) -> None:
        client = Client(url, f"198.51.101.{index + 1}", session=f"switcher-{index}")
        path = client.upload(picture(100 + index), f"switcher-{index}.png")
        turn = index
        while time.monotonic() < stop_at:
            began = time.monotonic()
            try:
                client.call("choose_model", [SWITCH_MODELS[turn % 2]])
                client.analyze(path)
            except Exception as error:
                errors.append(f"switcher {index}: {error}")
            turn += 1
            time.sleep(max(0.0, 5.0 - (time.monotonic() - began)))

    threads = [threading.Thread(target=visitor)] + [threading.Thread(target=switcher, args=(i,)) for i in range(switchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": len(ordinary),
        "p50_ms": round(statistics.median(ordinary), 1) if ordinary else None,
        "max_ms": round(max(ordinary), 1) if ordinary else None,
        "errors": errors,
    }


def check(results: list[dict]) -> list[str]:
    """Each result against its own picture: rho and kept-per-group as computed here."""
    from prunesid import PruneSID, load_vlm

    vlm = load_vlm("tiny-random")
    press = PruneSID(budget=64)
    mismatches = []
    for result in results:
        encoded = vlm.encode(picture(result["seed"]))
        selection = vlm.compress(encoded, press)[0]
        expected_rho = float(selection.rho[0])
        expected_quotas = selection.quotas[0, : int(selection.num_groups[0])].tolist()
        if abs(result["rho"] - expected_rho) > 1e-5 or result["kept_per_group"] != expected_quotas:
            mismatches.append(f"{result['kind']} #{result['seed']}: rho {result['rho']} vs {expected_rho}")
    return mismatches


# --- attacks: what hostile clients cost an ordinary visitor -----------------------------------


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def post(url: str, path: str, body, address: str, timeout: float = 300) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url + path, content=content, headers={"X-Forwarded-For": address, "Content-Type": "application/json"}, timeout=timeout)


def queued(url: str, path: str, body: dict, address: str) -> int:
    """Join the queue through ``path`` and wait for the result; the HTTP status of the join
    (200 and a failed result count as 200: the request was admitted)."""
    joined = post(url, path, body, address)
    if joined.status_code != 200:
        return joined.status_code
    if path.endswith("queue/join"):
        stream_url = url + f"gradio_api/queue/data?session_hash={body['session_hash']}"
        done = lambda line: '"process_completed"' in line
    else:
        stream_url = url + path + "/" + joined.json()["event_id"]
        done = lambda line: line.startswith("event:") and line[6:].strip() in ("complete", "error")
    with httpx.stream("GET", stream_url, headers={"X-Forwarded-For": address}, timeout=300) as stream:
        for line in stream.iter_lines():
            if done(line):
                break
    return 200


class Visitor:
    """An ordinary visitor: one analysis every 2 s through the page's door, timed."""

    def __init__(self, url: str, fn_index: int, path: str, address: str = "198.51.100.200"):
        self.url, self.fn_index, self.path, self.address = url, fn_index, path, address
        self.seconds: list[float] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            body = {"data": [{"path": self.path, "meta": META}] + CONTROLS, "fn_index": self.fn_index,
                    "session_hash": f"visitor{random.getrandbits(48):x}", "event_data": None}
            start = time.perf_counter()
            try:
                status = queued(self.url, "gradio_api/queue/join", body, self.address)
            except httpx.HTTPError:
                status = 0
            if status == 200:
                self.seconds.append(time.perf_counter() - start)
            else:
                self.refused += 1
            self.stop.wait(2.0)

    def summary(self) -> dict:
        times = sorted(self.seconds)
        return {"served": len(times), "refused": self.refused, "median_s": round(statistics.median(times), 2) if times else None,
                "max_s": round(times[-1], 2) if times else None}


def flood(seconds: float, threads: int, action) -> dict:
    """``threads`` threads calling ``action(thread index)`` (an HTTP status) for ``seconds``."""
    stop_at = time.monotonic() + seconds
    statuses: list[int] = []

    def loop(index: int):
        while time.monotonic() < stop_at:
            try:
                status = action(index)
            except httpx.HTTPError:
                status = 0
            statuses.append(status)
            if status not in (200,):
                time.sleep(0.5)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 300)
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def palette_png(side: int) -> bytes:
    """A palette PNG of side x side, a few KB: rows streamed through zlib."""
    import struct
    import zlib

    line = b"\x00" + bytes(side)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(line) for _ in range(side)) + compressor.flush()
    chunk = lambda kind, payload: struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", bytes(range(256)) * 3) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


ATTACKS = (
    "none (baseline)", "/call/v2 flood, one address, 30 at once", "/run flood, one address, 30 at once",
    "12 addresses at their full share (6 each)", "64 MP palette PNGs, one address, 6 at once",
    "made-up session ids, one address, 8 at once", "64 MB JSON bodies, 3 at once",
)


def attacks(url: str, pid: int, seconds: float, names=ATTACKS) -> dict:
    config = httpx.get(url + "config", timeout=30).json()
    analyze = next(dep["id"] for dep in config["dependencies"] if dep["api_name"] == "analyze")
    components = {c["id"]: c for c in config["components"]}
    snap = next(dep["id"] for dep in config["dependencies"] if not dep["queue"] and len(dep["inputs"]) == 1
                and components[dep["inputs"][0]]["type"] == "slider")
    visitor_client = Client(url, "198.51.100.200")
    visitor_picture = visitor_client.upload(picture(1), "visitor.png")
    stranger = Client(url, "203.0.113.66")
    stranger_picture = stranger.upload(picture(2), "stranger.png")
    page_body = lambda: {"data": [{"path": stranger_picture, "meta": META}] + CONTROLS, "fn_index": analyze,
                         "session_hash": f"s{random.getrandbits(48):x}", "event_data": None}
    big_palette = stranger.upload(palette_png(8000), "palette.png")

    scenarios = {
        "none (baseline)": (1, lambda i: (time.sleep(1), 200)[1]),
        "/call/v2 flood, one address, 30 at once": (30, lambda i: queued(url, "gradio_api/call/v2/analyze", {
            "image": {"path": stranger_picture, "meta": META}, "budget": 64, "groups": 0, "lam": 0, "grouping": "psca", "dynamic": False},
            "203.0.113.66")),
        "/run flood, one address, 30 at once": (30, lambda i: post(url, "gradio_api/run/analyze", {
            "data": [{"path": stranger_picture, "meta": META}] + CONTROLS}, "203.0.113.67").status_code),
        "12 addresses at their full share (6 each)": (72, lambda i: queued(url, "gradio_api/queue/join", page_body(), f"203.0.113.{100 + i // 6}")),
        "64 MP palette PNGs, one address, 6 at once": (6, lambda i: queued(url, "gradio_api/queue/join", {
            **page_body(), "data": [{"path": big_palette, "meta": META}] + CONTROLS}, "203.0.113.66")),
        "made-up session ids, one address, 8 at once": (8, lambda i: post(url, "gradio_api/run/predict", {
            "data": [64], "fn_index": snap, "session_hash": f"m{random.getrandbits(64):x}"}, "203.0.113.68").status_code),
        "64 MB JSON bodies, 3 at once": (3, lambda i: post(url, "gradio_api/queue/join", b'{"data": ["' + b"x" * (64 << 20) + b'"]}',
                                                           "203.0.113.69").status_code),
    }
    assert set(scenarios) == set(ATTACKS)
    report = {}
    for name in names:
        threads, action = scenarios[name]
        time.sleep(2)
        rss_before, hwm_before = resident_mb(pid), peak_mb(pid)
        visitor = Visitor(url, analyze, visitor_picture)
        visitor.thread.start()
        statuses = flood(seconds, threads, action)
        visitor.stop.set()
        visitor.thread.join(timeout=300)
        report[name] = {"visitor": visitor.summary(), "attack_statuses": statuses,
                        "peak_growth_mb": round(peak_mb(pid) - hwm_before, 1), "rss_growth_mb": round(resident_mb(pid) - rss_before, 1)}
        print(f"  {name}: {report[name]}", flush=True)
    return report


def main_attacks(args) -> None:
    root = Path(args.root).resolve()
    log_path = ROOT / "test-artifacts" / "load-attacks-server.log"
    log_path.parent.mkdir(exist_ok=True)
    report = {}
    for name in ATTACKS:  # a fresh app for each: its peak memory is that attack's
        port = free_port()
        server = launch(port, log_path, root)
        try:
            report.update(attacks(f"http://127.0.0.1:{port}/", server.pid, args.attack_seconds, [name]))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\nAttacks on app.py of {root} (tiny-random), {args.attack_seconds:.0f} s each; an ordinary visitor analyses an image every 2 s\n")
    print("| attack | visitor served | refused | median s | max s | app peak growth MB | attack's statuses |")
    print("|---|---|---|---|---|---|---|")
    for name, row in report.items():
        v = row["visitor"]
        print(f"| {name} | {v['served']} | {v['refused']} | {v['median_s']} | {v['max_s']} | {row['peak_growth_mb']:.0f} | "
              f"{', '.join(f'{k}: {n}' for k, n in sorted(row['attack_statuses'].items()))} |")
    print(json.dumps({"benchmark": "load-attacks", "root": str(root), "seconds": args.attack_seconds, "attacks": report}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--analyses", type=int, default=300)
    parser.add_argument("--switchers", type=int, default=0, help="measure the model policy with this many switching clients")
    parser.add_argument("--attacks", action="store_true", help="measure what hostile clients cost an ordinary visitor")
    parser.add_argument("--attack-seconds", type=float, default=20.0)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose app.py is launched (default: this one)")
    args = parser.parse_args()
    if args.switchers:
        return policy_main(args.switchers, args.seconds)
    if args.attacks:
        main_attacks(args)
        return
    log_path = ROOT / "test-artifacts" / "load-server.log"
    log_path.parent.mkdir(exist_ok=True)
    port = free_port()
    server = launch(port, log_path)
    try:
        rss_idle = resident_mb(server.pid)
        outcome = run(f"http://127.0.0.1:{port}/", server.pid, args.clients, args.seconds, args.analyses)
    finally:
        server.terminate()
        server.wait(timeout=30)
    outcome["rss_idle_mb"] = round(rss_idle, 1)
    print(f"Load: {args.clients} clients for {outcome['seconds']} s on tiny-random (2 model calls at once), then analyses up to {args.analyses}\n")
    print("| requests | per s | analyze p50 / p90 ms | chat p50 / p90 ms | errors | mismatches | RSS idle / after MB |")
    print("|---|---|---|---|---|---|---|")
    a, c = outcome["by_kind"]["analyze"], outcome["by_kind"]["chat"]
    print(
        f"| {outcome['mixed_requests']} ({a['requests']} analyze, {c['requests']} chat) | {outcome['requests_per_s']} | "
        f"{a['p50_ms']} / {a['p90_ms']} | {c['p50_ms']} / {c['p90_ms']} | {len(outcome['errors'])} | {len(outcome['mismatches'])} | "
        f"{outcome['rss_idle_mb']:.0f} / {outcome['rss_end_mb']:.0f} after {outcome['analyses']} analyses of {outcome['distinct_images']} images |"
    )
    print("\nresident MB as analyses accumulate:", ", ".join(f"{n}: {mb:.0f}" for n, mb in outcome["rss_samples"]))
    for line in (outcome["errors"] + outcome["mismatches"])[:10]:
        print("  ", line)
    print(json.dumps({"benchmark": "load", **{k: v for k, v in outcome.items() if k not in ("errors", "mismatches")},
                      "errors": len(outcome["errors"]), "mismatches": len(outcome["mismatches"])}))


def policy_main(switchers: int, seconds: float) -> None:
    rows = {}
    for policy, env in (("local", {}), ("hosted", {"PRUNESID_PUBLIC": "1"})):
        log_path = ROOT / "test-artifacts" / f"load-{policy}-server.log"
        log_path.parent.mkdir(exist_ok=True)
        port = free_port()
        server = launch(port, log_path, **env)
        try:
            url = f"http://127.0.0.1:{port}/"
            quiet = switching(url, 0, min(seconds, 10.0))
            before = log_path.read_text().count("Loading ")  # start-up loads (hosted: every listed model)
            busy = switching(url, switchers, seconds)
            loads = log_path.read_text().count("Loading ") - before
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows[policy] = {"alone": quiet, "with_switchers": busy, "model_loads_logged": loads}
    print(f"An ordinary visitor's analyze on tiny-random while {switchers} clients switch between {' and '.join(SWITCH_MODELS)} every 5 s ({seconds:.0f} s)\n")
    print("| policy | alone p50 ms | with switchers p50 / max ms | requests | model loads during the run | errors |")
    print("|---|---|---|---|---|---|")
    for policy, row in rows.items():
        busy = row["with_switchers"]
        print(f"| {policy} | {row['alone']['p50_ms']} | {busy['p50_ms']} / {busy['max_ms']} | {busy['requests']} | {row['model_loads_logged']} | {len(busy['errors'])} |")
        for line in busy["errors"][:3]:
            print("  ", line)
    print(json.dumps({"benchmark": "load-policy", "switchers": switchers, "seconds": seconds,
                      **{policy: {**row, "with_switchers": {**row["with_switchers"], "errors": len(row["with_switchers"]["errors"])},
                                  "alone": {**row["alone"], "errors": len(row["alone"]["errors"])}} for policy, row in rows.items()}}))


if __name__ == "__main__":
    main()
