#!/usr/bin/python3
"""The data path, measured in one run:

1. decode + augment per core: `resnet data bench --threads 1` against torchvision.transforms on
   PIL (one thread, torch.set_num_threads(1)) on the same JPEGs, in the same shuffled order, for
   the training transform (RandomResizedCrop 224 + flip + ToTensor + Normalize) and the
   evaluation one (Resize 256 + CenterCrop 224 + ToTensor + Normalize); rounds alternate;
2. reading from a cold page cache (/proc/sys/vm/drop_caches, root only): the folder of files
   against the packed HDF5 file (`resnet data pack`), shuffled as training reads and sequential;
3. ResNet-50 training fed by the JPEG loader against the same run on synthetic data, alternating.

The JPEGs are made from the photographs that scikit-image ships (Debian's python3-skimage; its
data folder is found where it is installed, or taken from the package with `apt-get download`
when it is not): random 500x375 or 375x500 windows, ImageNet's typical size, saved at quality 90
with 4:2:0 chroma as PIL writes by default.

  /usr/bin/python3 launch/scripts/bench_data.py [--files 3000] [--seconds 6] [--rounds 2]
      [--train-rounds 2] [--no-train] [--work /tmp/resnet_bench_data]

Prints Markdown tables.
"""
import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "coins.png",
          "camera.png", "brick.png", "grass.png", "gravel.png", "color.png", "logo.png"]


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-1000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def photo_dir(work):
    for d in glob.glob("/usr/lib/python3/dist-packages/skimage/data"):
        if os.path.exists(os.path.join(d, "astronaut.png")):
            return d
    d = os.path.join(work, "skimage")
    data = os.path.join(d, "x", "usr", "lib", "python3", "dist-packages", "skimage", "data")
    if not os.path.isdir(data):
        os.makedirs(d, exist_ok=True)
        subprocess.run(["apt-get", "download", "python3-skimage"], cwd=d, check=True,
                       capture_output=True)
        deb = glob.glob(os.path.join(d, "python3-skimage_*.deb"))[0]
        run(["dpkg", "-x", deb, os.path.join(d, "x")])
    return data


def make_images(work, files, val_files):
    from PIL import Image
    root = os.path.join(work, "jpeg")
    stamp = os.path.join(root, f".made_{files}_{val_files}")
    if os.path.exists(stamp):
        return root
    shutil.rmtree(root, ignore_errors=True)
    src = photo_dir(work)
    photos = []
    for name in PHOTOS:
        p = os.path.join(src, name)
        if os.path.exists(p):
            photos.append(Image.open(p).convert("RGB"))
    if not photos:
        sys.exit(f"no photographs found in {src}")
    rng = random.Random(0)
    classes = 10
    for split, count in (("train", files), ("val", val_files)):
        for c in range(classes):
            os.makedirs(os.path.join(root, split, f"class{c:02d}"), exist_ok=True)
        for i in range(count):
            im = photos[rng.randrange(len(photos))]
            w, h = (500, 375) if rng.random() < 0.75 else (375, 500)
            # Scale so that the window fits with room to move, then take a random window.
            s = max(w / im.width, h / im.height) * rng.uniform(1.0, 1.6)
            big = im.resize((max(w, round(im.width * s)), max(h, round(im.height * s))),
                            Image.BILINEAR)
            x, y = rng.randrange(big.width - w + 1), rng.randrange(big.height - h + 1)
            out = big.crop((x, y, x + w, y + h))
            if rng.random() < 0.5:
                out = out.transpose(Image.FLIP_LEFT_RIGHT)
            out.save(os.path.join(root, split, f"class{i % classes:02d}", f"img{i:06d}.JPEG"),
                     quality=90)
    open(stamp, "w").close()
    return root


def pil_bench(paths, transform, seconds):
    from PIL import Image
    import torch
    torch.set_num_threads(1)
    done, t0 = 0, time.perf_counter()
    while True:
        for p in paths:
            with open(p, "rb") as f:
                img = Image.open(f).convert("RGB")  # torchvision's pil_loader
            transform(img)
            done += 1
            if done % 16 == 0 and time.perf_counter() - t0 >= seconds:
                return done / (time.perf_counter() - t0)


def ours_bench(a, source, transform, seconds=None, cold=False, order="shuffled", threads=1):
    cmd = [a.binary, "data", "bench", "--from", source, "--transform", transform, "--threads",
           str(threads), "--order", order, "--json"]
    cmd += ["--drop-caches"] if cold else ["--seconds", str(seconds)]
    return json.loads(run(cmd).strip().splitlines()[-1])


def transforms_bench(a, root):
    import torchvision.transforms as T
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    cases = {
        "torchvision": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                  T.ToTensor(), norm]),
        "eval": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]),
    }
    train = os.path.join(root, "train")
    paths = sorted(glob.glob(os.path.join(train, "*", "*.JPEG")))
    random.Random(1).shuffle(paths)
    for p in paths:  # a warm page cache for both
        with open(p, "rb") as f:
            f.read()
    res = {k: {"ours": [], "pil": []} for k in cases}
    for r in range(a.rounds):
        for name, tf in cases.items():
            res[name]["ours"].append(ours_bench(a, train, name, a.seconds)["img_per_s"])
            res[name]["pil"].append(pil_bench(paths, tf, a.seconds))
            print(f"  round {r + 1} {name}: ours {res[name]['ours'][-1]:.0f}, "
                  f"PIL {res[name]['pil'][-1]:.0f} img/s", file=sys.stderr)
    print("\n### Decode + transform, one thread, 500x375 JPEGs (quality 90)\n")
    print("| transform | ours img/s | torchvision + PIL img/s | ratio |")
    print("|---|---:|---:|---:|")
    label = {"torchvision": "RandomResizedCrop 224 + flip + normalise",
             "eval": "Resize 256 + CenterCrop 224 + normalise"}
    for name in cases:
        o, p = statistics.median(res[name]["ours"]), statistics.median(res[name]["pil"])
        print(f"| {label[name]} | {o:.0f} | {p:.0f} | {o / p:.2f}x |")


def cold_bench(a, root, packed):
    print(f"\n### Reading {a.files} files from a cold page cache (`--transform read`)\n")
    print("| source | order | img/s | MB/s | read calls |")
    print("|---|---|---:|---:|---:|")
    for src, name in ((os.path.join(root, "train"), "folder of JPEGs"), (packed, "packed HDF5")):
        for order in ("shuffled", "sequential"):
            d = ours_bench(a, src, "read", cold=True, order=order)
            print(f"| {name} | {order} | {d['img_per_s']:.0f} | {d['mb_per_s']:.1f} | "
                  f"{d['read_calls']} |")


def train_run(a, work, kind, root):
    run_dir = os.path.join(work, f"run_{kind}")
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = [f"run_dir={run_dir}", "model.name=resnet50", "model.in_channels=3",
            "model.num_classes=10", f"data.batch_size={a.batch}", "data.test_batch_size=16",
            f"data.train_limit={a.batch * a.steps}", "data.test_limit=16",
            f"data.workers={a.workers}", "data.prefetch=4", f"train.threads={a.train_threads}",
            f"train.epochs={a.epochs}", "train.precision=fp32", "train.seed=0",
            "optim.lr=0.01", "checkpoint.every_epochs=0"]
    if kind == "jpeg":
        sets += ["data.kind=image_folder", f"data.root={root}", "data.augment.recipe=torchvision",
                 "data.augment.crop=224", "data.augment.hflip=true"]
    else:
        sets += ["data.kind=synthetic", "data.height=224", "data.width=224",
                 f"data.synthetic_size={a.batch * a.steps}", "data.augment.recipe=none"]
    cmd = [a.binary, "train", "--config", os.path.join(ROOT, "configs", "fashion_mnist_resnet20.yaml")]
    for s in sets:
        cmd += ["--set", s]
    run(cmd)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    # The first epoch holds the warm-up steps (shapes, buffer pool, oneDNN primitives).
    return statistics.mean(l["img_per_s"] for l in lines[1:])


def train_bench(a, work, root):
    res = {"jpeg": [], "synthetic": []}
    for r in range(a.train_rounds):
        for kind in ("jpeg", "synthetic"):
            res[kind].append(train_run(a, work, kind, root))
            print(f"  train round {r + 1} {kind}: {res[kind][-1]:.2f} img/s", file=sys.stderr)
    j, s = statistics.median(res["jpeg"]), statistics.median(res["synthetic"])
    print(f"\n### ResNet-50 training (fp32, batch {a.batch}, {a.steps} steps an epoch, epochs 2-"
          f"{a.epochs}), train.threads={a.train_threads}, data.workers={a.workers}\n")
    print("| data | img/s (median of rounds) | rounds |")
    print("|---|---:|---|")
    print(f"| JPEG folder, RandomResizedCrop 224 + flip | {j:.2f} | "
          f"{', '.join(f'{x:.2f}' for x in res['jpeg'])} |")
    print(f"| synthetic 224x224 | {s:.2f} | {', '.join(f'{x:.2f}' for x in res['synthetic'])} |")
    print(f"\nJPEG-fed speed / synthetic speed: {100 * j / s:.1f}%")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "resnet"))
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "resnet_bench_data"))
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--train-rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--train-threads", type=int, default=2)
    a = p.parse_args()
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"{a.binary}: not built (cmake -S . -B build && cmake --build build)")
    os.makedirs(a.work, exist_ok=True)
    root = make_images(a.work, a.files, 40)
    packed = os.path.join(a.work, "train.h5")
    if not os.path.exists(packed):
        run([a.binary, "data", "pack", "--from", os.path.join(root, "train"), "--to", packed])
    mb = sum(os.path.getsize(f) for f in glob.glob(os.path.join(root, "train", "*", "*"))) / 1e6
    print(f"{a.files} JPEGs, {mb:.0f} MB, in {root}; packed: {packed}; "
          f"{os.cpu_count()} CPUs ({open('/proc/cpuinfo').read().count('processor')} listed)")
    transforms_bench(a, root)
    if os.geteuid() == 0:
        cold_bench(a, root, packed)
    else:
        print("\n(cold page cache: needs root to write /proc/sys/vm/drop_caches; skipped)")
    if not a.no_train:
        train_bench(a, a.work, root)


if __name__ == "__main__":
    main()
