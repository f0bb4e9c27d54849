"""Large photos: time and peak memory of prunesid.load_image, each case in a fresh process.

Cases: a 12 MP phone JPEG (decoded at full size), a 50 MP JPEG (draft mode: half scale out
of the decoder), a 100 MP PNG and a 178 MP PNG (just under Pillow's decompression-bomb
limit; no reduced decode exists for PNG: full size, then reduced at once). The files are
generated (gradients). Peak memory is the process's VmHWM after the load minus the same
process's before it; time is the median of 3 loads.

    python benchmarks/images.py

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_images_large import write_jpeg, write_png  # noqa: E402

CASES = [
    ("12 MP JPEG (4000 x 3000)", "jpeg", 4000, 3000),
    ("50 MP JPEG (8660 x 5774)", "jpeg", 8660, 5774),
    ("100 MP PNG (10000 x 10000)", "png", 10000, 10000),
    ("178 MP PNG (15400 x 11560)", "png", 15400, 11560),
]

PROBE = """
import importlib.util, json, statistics, sys, time
def hwm():
    return [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')][0] / 1024
spec = importlib.util.spec_from_file_location('images', sys.argv[2])
images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)
before = hwm()
start = time.perf_counter(); image = images.load_image(sys.argv[1]); first = time.perf_counter() - start
peak = hwm() - before
size = image.size
del image
times = [first]
for _ in range(2):
    start = time.perf_counter(); images.load_image(sys.argv[1]); times.append(time.perf_counter() - start)
print(json.dumps({'peak_mb': round(peak, 1), 'load_ms': round(statistics.median(times) * 1000, 1), 'size': size}))
"""


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, kind, width, height in CASES:
            path = Path(folder) / f"case.{kind}"
            (write_jpeg if kind == "jpeg" else write_png)(path, width, height)
            out = subprocess.run(
                [sys.executable, "-c", PROBE, str(path), str(ROOT / "prunesid" / "images.py")],
                capture_output=True, text=True, check=True, timeout=600,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({
                "case": label,
                "megapixels": round(width * height / 1e6, 1),
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "decoded": f"{result['size'][0]} x {result['size'][1]}",
                "load_ms": result["load_ms"],
                "peak_mb": result["peak_mb"],
            })
            path.unlink()
    print("load_image on large photos (fresh process per case; peak = VmHWM increase during the first load)\n")
    print("| case | file MB | decoded as | load ms (median of 3) | peak MB |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['file_mb']} | {row['decoded']} | {row['load_ms']:.0f} | {row['peak_mb']:.0f} |")
    print(json.dumps({"benchmark": "images", "rows": rows}))


if __name__ == "__main__":
    main()
