#!/usr/bin/env python3
"""`resnet export` checked by other runtimes. For each MODEL, a checkpoint from `resnet ckpt
init` (its BN parameters and running statistics randomised by checkpoint_values.py, so that
no batch norm is the identity) is exported three ways:
  - batch norm kept, batch dynamic, opset 13 (the default),
  - batch norm folded into the convolutions (--fold-bn), batch fixed at the inputs', opset 11,
  - batch norm kept, batch fixed, opset 17;
each file passes onnx.checker.check_model (full check: with shape inference), declares its
input and output as asked, and OpenCV's DNN module running it gives `resnet infer`'s logits on
the same random images within the bound:

    max |opencv - resnet infer| <= TOL * max |resnet infer|   (fp32 on both sides)

TOL = 1e-4 is the float32 conformance bound of the logits against PyTorch
(conformance_test.py): both runtimes sum the same products in float32 in different orders, and
folding rounds each folded weight once more. A 1000-class RGB network gets torchvision's ImageNet
class names and transform (as convert_torchvision.py writes them), which must come through as
the file's metadata, and is exported without --size (the transform's crop); the Python of
launch/README.md ("An exported model elsewhere") run on its export must name predict's class
with predict's probability.

    onnx_test.py RESNET_BINARY MODEL [MODEL...]

Exit status 0 when every check holds, 1 when one does not, 77 (skipped) when onnx, OpenCV,
numpy or h5py is missing.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
TOL = 1e-4

try:
    import cv2
    import h5py
    import numpy as np
    import onnx
except ImportError as e:
    print(f"SKIP: {e.name} is not importable (apt install python3-onnx python3-opencv "
          "python3-h5py)")
    sys.exit(SKIP)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "launch", "scripts"))
import convert_torchvision as conv  # noqa: E402
from checkpoint_values import randomise  # noqa: E402

THREADS = 2


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(THREADS)))
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_model(resnet, model, tmp, rng):
    ckpt = os.path.join(tmp, "model.h5")
    # The network's own input channels and classes: "wrote F: NAME, 3 channel(s), 10 classes, seed 5".
    wrote = run([resnet, "ckpt", "init", "--model", model, "--seed", "5", "--output", ckpt])
    found = re.search(r", (\d+) channel\(s\), (\d+) classes", wrote)
    channels, classes = int(found.group(1)), int(found.group(2))
    imagenet = classes == 1000
    size = 224 if imagenet else 32
    randomise(ckpt, rng, momentum=False)
    _, data = conv.read_checkpoint(ckpt)
    bn_count = sum(1 for k in data if k.startswith("model/") and k.endswith("running_var"))
    if imagenet:
        conv.write_model_use(ckpt, channels, classes)
    batch = 2
    images = rng.uniform(-2, 2, (batch, channels, size, size)).astype(np.float32)
    inp, out = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
    with h5py.File(inp, "w") as f:
        f["images"] = images
    run([resnet, "infer", "--checkpoint", ckpt, "--input", inp, "--output", out, "--threads",
         str(THREADS)])
    with h5py.File(out, "r") as f:
        ours = f["logits"][()]
    if not np.isfinite(ours).all():
        sys.exit(f"FAIL: {model}: resnet infer's logits on the randomised checkpoint are not "
                 "finite (its random BN statistics overflow float32 in a network this deep)")
    scale = float(np.abs(ours).max())

    size_flag = [] if imagenet else ["--size", str(size)]
    ways = [("bn kept, dynamic batch, opset 13", ["--batch", "dynamic"], "N"),
            ("bn folded, opset 11", ["--fold-bn", "--batch", str(batch), "--opset", "11"], batch),
            ("bn kept, opset 17", ["--batch", str(batch), "--opset", "17"], batch)]
    failed = []
    for label, flags, want_batch in ways:
        path = os.path.join(tmp, "model.onnx")
        line = run([resnet, "export", "--checkpoint", ckpt, "--to", path] + size_flag + flags)
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        if [i.name for i in m.graph.input] != ["input"] or \
                dims(m.graph.input[0]) != [want_batch, channels, size, size]:
            failed.append(f"{label}: input {[(i.name, dims(i)) for i in m.graph.input]}")
        if [o.name for o in m.graph.output] != ["logits"] or \
                dims(m.graph.output[0]) != [want_batch, classes]:
            failed.append(f"{label}: output {[(o.name, dims(o)) for o in m.graph.output]}")
        # Folding leaves no batch norm on a convolution's own output, and keeps the others
        # (after a sum, or a unit's pre-activation); kept, every batch norm is there.
        producer = {o: n.op_type for n in m.graph.node for o in n.output}
        uses = {}
        for n in m.graph.node:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
        foldable = [n for n in bns
                    if producer.get(n.input[0]) == "Conv" and uses[n.input[0]] == 1]
        if "--fold-bn" in flags and foldable:
            failed.append(f"{label}: {len(foldable)} batch norm(s) on a Conv left unfolded")
        if "--fold-bn" not in flags and len(bns) != bn_count:
            failed.append(f"{label}: {len(bns)} BatchNormalization nodes, the network has "
                          f"{bn_count}")
        meta = {p.key: p.value for p in m.metadata_props}
        if meta.get("model") != model:
            failed.append(f"{label}: metadata model {meta.get('model')!r}")
        if imagenet:
            names = meta.get("class_names", "").splitlines()
            t = json.loads(meta.get("transform", "{}"))
            if len(names) != 1000 or names[0] != "tench" or t.get("crop") != 224:
                failed.append(f"{label}: metadata names {names[:2]} transform {t}")
        net = cv2.dnn.readNetFromONNX(path)
        net.setInput(images)
        theirs = net.forward()
        err = float(np.abs(theirs - ours).max()) / scale
        print(f"{model}: {label}: {len(m.graph.node)} nodes, OpenCV max |diff| "
              f"{err * scale:.3g} = {err:.3g} of max |logit| {scale:.3g}"
              f"{'' if err <= TOL else '  > ' + str(TOL)}")
        if not err <= TOL:
            failed.append(f"{label}: OpenCV differs by {err:.3g} of max |logit| > {TOL}")
        print("  " + line.strip().splitlines()[1])
    if imagenet:
        failed += check_readme_snippet(resnet, ckpt, tmp, rng)
    return failed


def check_readme_snippet(resnet, ckpt, tmp, rng):
    """launch/README.md's Python for running an exported model elsewhere, on a 256 x 256 PNG
    (the transform's resize is then the identity on both sides, so its input is predict's):
    the same class and probability as `resnet predict`."""
    readme = open(os.path.join(HERE, "..", "..", "launch", "README.md")).read()
    section = readme.split("### An exported model elsewhere", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script, model, image = (os.path.join(tmp, n) for n in ("snippet.py", "m.onnx", "photo.png"))
    with open(script, "w") as f:
        f.write(code)
    cv2.imwrite(image, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    run([resnet, "export", "--checkpoint", ckpt, "--to", model])
    theirs = run([sys.executable, script, model, image]).strip()
    ours = run([resnet, "predict", "--checkpoint", ckpt, "--top", "1", image]).strip()
    name, p = ours.split(": ", 1)[1].rsplit(" ", 1)
    t_name, t_p = theirs.rsplit(" ", 1)
    print(f"README snippet: '{theirs}', predict: '{name} {p}'")
    if t_name != name or abs(float(t_p) - float(p)) > 2e-4:
        return [f"launch/README.md's snippet says '{theirs}', predict '{name} {p}'"]
    return []


def main():
    resnet, models = sys.argv[1], sys.argv[2:]
    cv2.setNumThreads(THREADS)
    rng = np.random.default_rng(11)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            failed += [f"{model}: {f}" for f in check_model(resnet, model, tmp, rng)]
    if failed:
        print("FAIL:\n  " + "\n  ".join(failed))
        sys.exit(1)
    print(f"PASS: {len(models)} network(s), three exports each, within {TOL} of max |logit|")


if __name__ == "__main__":
    main()
