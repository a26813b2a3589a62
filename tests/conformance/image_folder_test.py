"""The image-folder reader and the evaluation transform against torchvision.

  image_folder_test.py RESNET_BINARY

Builds an ImageFolder tree with PIL (RGB, grayscale, CMYK and PNG images of several sizes,
nested folders, a folder reached through a link, upper-case extensions, a text file, a corrupt,
a truncated and a BMP file, an empty class folder) and checks:

  1. `resnet data list` gives torchvision's classes, files, order and labels;
  2. `resnet data dump --transform eval` (resize the shorter side to 256, centre crop 224,
     normalise) agrees with torchvision's Resize + CenterCrop + ToTensor + Normalize on every
     image the project decodes, within bounds set by the two resamplers' rounding; a reference
     off by two pixels must miss them (so the bounds can fail);
  3. the files the project calls bad are exactly the corrupt, truncated and BMP ones.

Exit 77 (CTest skip) without torch, torchvision, PIL or h5py.
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.datasets import folder as tvf
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)

# Mean absolute and 99.9th-percentile differences, in normalised units (1/255 of a pixel is
# about 0.017). PIL rounds to 8 bits after each resampling pass, the project keeps floats;
# DCT-scaled decoding (the 1000-pixel images) differs from PIL's full decode by about a level.
MEAN_BOUND = 0.02
P999_BOUND = 0.1


def make_tree(root):
    rng = np.random.default_rng(0)

    def photo(w, h):
        # Smooth colour fields with some texture: JPEG-like content, not noise.
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([
            128 + 100 * np.sin(x / (17 + 5 * c) + y / (23 + 3 * c) + c) for c in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    def put(rel, img, **kw):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img.save(path, **kw)
        return path

    put("bird/a.jpg", photo(500, 375), quality=90)
    put("bird/B.JPEG", photo(375, 500), quality=90)
    put("bird/big.jpeg", photo(1000, 800), quality=85)           # DCT scaling 1/2
    put("bird/nested/deeper/c.jpg", photo(320, 240), quality=90)
    put("bird/nested/d.jpg", photo(300, 300), quality=90)
    put("bird/nested b/e.jpg", photo(260, 400), quality=90)     # sorts before nested/
    put("cat/gray.jpg", photo(400, 300).convert("L"), quality=90)
    put("cat/cmyk.jpg", photo(420, 310).convert("CMYK"), quality=90)
    put("cat/small.jpg", photo(150, 100), quality=90)           # enlarged
    put("cat/rgb.png", photo(330, 260))
    put("cat/rgba.PNG", photo(300, 280).convert("RGBA"))
    put("cat/gray.png", photo(280, 300).convert("L"))
    put("cat/image.bmp", photo(64, 64))                         # listed, not decoded
    good = put("dog/ok.jpg", photo(480, 360), quality=90)
    with open(good, "rb") as f:
        data = f.read()
    with open(os.path.join(root, "dog/truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(root, "dog/corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff" + bytes(rng.integers(0, 256, 5000, dtype=np.uint8)))
    with open(os.path.join(root, "dog/notes.txt"), "w") as f:
        f.write("not an image\n")
    os.makedirs(os.path.join(root, "empty"))
    # A class whose images live elsewhere, reached through a link (os.walk follows it).
    elsewhere = os.path.join(os.path.dirname(root), "elsewhere")
    put_abs = os.path.join(elsewhere, "f.jpg")
    os.makedirs(elsewhere, exist_ok=True)
    photo(350, 280).save(put_abs, quality=90)
    os.makedirs(os.path.join(root, "fish"))
    os.symlink(elsewhere, os.path.join(root, "fish", "linked"))
    photo(240, 320).save(os.path.join(root, "fish", "g.jpg"), quality=90)


def torchvision_listing(root):
    classes, class_to_idx = tvf.find_classes(root)
    samples = []
    # torchvision 0.14 refuses empty classes; one class at a time gives ImageFolder's list with
    # the empty class's index kept (what allow_empty=True does in later versions).
    for c in classes:
        try:
            samples += tvf.make_dataset(root, {c: class_to_idx[c]}, tvf.IMG_EXTENSIONS)
        except FileNotFoundError:
            pass
    return classes, samples


def project_listing(binary, root):
    out = subprocess.run([binary, "data", "list", "--from", root], check=True,
                         capture_output=True, text=True).stdout
    classes, samples, empty = [], [], []
    for line in out.splitlines():
        if line.startswith("# class"):
            classes.append(line.split("\t", 1)[1])
        elif line.startswith("# empty"):
            empty.append(line.split("\t", 1)[1])
        else:
            label, path = line.split("\t", 1)
            samples.append((path, int(label)))
    return classes, samples, empty


def reference_eval(path, shift=0):
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    img = Image.open(path).convert("RGB")
    img = T.Resize(256)(img)
    if shift:
        img = img.crop((shift, shift, img.width, img.height))
    return norm(T.ToTensor()(T.CenterCrop(224)(img))).numpy()


def main():
    binary = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "train")
        make_tree(root)
        tv_classes, tv_samples = torchvision_listing(root)
        classes, samples, empty = project_listing(binary, root)
        print(f"classes: torchvision {tv_classes}, project {classes}, empty {empty}")
        if classes != tv_classes:
            failures.append(f"classes differ: {classes} vs torchvision {tv_classes}")
        tv = tv_samples
        if [(os.path.normpath(p), l) for p, l in samples] != [(os.path.normpath(p), l) for p, l in tv]:
            failures.append("file order or labels differ from torchvision's ImageFolder")
            for a, b in zip(samples, tv):
                print(f"  project {a}  torchvision {b}")
        if empty != ["empty"]:
            failures.append(f"empty class folders reported: {empty}, expected ['empty']")
        print(f"files: {len(samples)} listed, same as torchvision: "
              f"{not any('order' in f for f in failures)}")

        dump = os.path.join(tmp, "eval.h5")
        run = subprocess.run([binary, "data", "dump", "--from", root, "--to", dump,
                              "--transform", "eval"], capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stderr)
            failures.append(f"data dump failed ({run.returncode})")
            return finish(failures)
        with h5py.File(dump, "r") as f:
            images, bad = f["images"][:], f["bad"][:]
        expected_bad = {"image.bmp", "truncated.jpg", "corrupt.jpg"}
        got_bad = {os.path.basename(samples[i][0]) for i in range(len(samples)) if bad[i]}
        print(f"bad files: {sorted(got_bad)}")
        if got_bad != expected_bad:
            failures.append(f"bad files {sorted(got_bad)}, expected {sorted(expected_bad)}")
        worst_shifted = 0.0
        for i, (path, _) in enumerate(samples):
            if bad[i]:
                continue
            ours = images[i, 0]
            ref = reference_eval(path)
            d = np.abs(ours - ref)
            mean, p999 = float(d.mean()), float(np.quantile(d, 0.999))
            ok = mean <= MEAN_BOUND and p999 <= P999_BOUND
            shifted = float(np.abs(ours - reference_eval(path, shift=2)).mean())
            worst_shifted = max(worst_shifted, shifted)
            print(f"  {os.path.relpath(path, root):28s} mean {mean:.4f} p99.9 {p999:.4f} "
                  f"(2-pixel shift: mean {shifted:.4f}) {'ok' if ok else 'FAIL'}")
            if not ok:
                failures.append(f"{path}: mean {mean:.4f} / p99.9 {p999:.4f} exceed "
                                f"{MEAN_BOUND} / {P999_BOUND}")
            if shifted <= MEAN_BOUND:
                failures.append(f"{path}: a reference shifted by 2 pixels is within the bound "
                                f"({shifted:.4f}): the test could not fail")
    return finish(failures)


def finish(failures):
    for f in failures:
        print("FAIL:", f)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
