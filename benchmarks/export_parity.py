"""Exported models against chainrule on the whole Fashion-MNIST test set: ONNX Runtime and PyTorch.

    python benchmarks/export_parity.py [--data-dir ../shared/datasets] [--epochs 3] [--repeats 5]

Trains two classifiers with `chainrule train` (784-256-128-10: ReLU with BatchNorm; GELU with LayerNorm
and dropout), exports each as ONNX (logits, and with --probabilities) and as PyTorch (the generated
module and its safetensors weights), and runs all 10,000 test images through chainrule, ONNX Runtime and
torch. Prints the largest absolute difference of the outputs and of the class probabilities, how many
predictions differ, each engine's accuracy, and the median time to classify the whole test set (after a
warm-up run; the engines take turns, each on every core). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import chainrule as cr  # noqa: E402
from chainrule.training.data import load_dataset  # noqa: E402

MODELS = {
    "relu+batchnorm": {"activation": "relu", "batchnorm": True},
    "gelu+layernorm+dropout": {"activation": "gelu", "layernorm": True, "dropout": 0.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import onnxruntime
    import torch

    threads = os.cpu_count() or 1  # every engine uses every core, as NumPy's BLAS does by default
    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    dataset = load_dataset("fashion-mnist", args.data_dir, progress=False)
    X = dataset.X_test.reshape(len(dataset.X_test), -1).astype(np.float32)  # raw pixels, 0 to 255
    y = dataset.y_test
    print(
        f"Fashion-MNIST test set: {len(X)} images; {threads} threads; numpy {np.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in MODELS.items():
            out = Path(tmp) / name
            config = cr.TrainConfig(
                dataset="fashion-mnist",
                data_dir=args.data_dir,
                epochs=args.epochs,
                out=str(out),
                quiet=True,
                plots=False,
                **settings,
            )
            model = cr.train(config).model
            cr.export(model, out / "model.onnx")
            cr.export(model, out / "probabilities.onnx", probabilities=True)
            cr.export(model, out / "model_torch.py")
            spec = importlib.util.spec_from_file_location("model_torch", out / "model_torch.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            twin = module.load()
            logits = onnxruntime.InferenceSession(str(out / "model.onnx"), options, providers=["CPUExecutionProvider"])
            probs = onnxruntime.InferenceSession(
                str(out / "probabilities.onnx"), options, providers=["CPUExecutionProvider"]
            )

            def run_torch(X=X, twin=twin):
                with torch.no_grad():
                    return twin(torch.from_numpy(X)).numpy()

            engines = {
                "chainrule": lambda model=model: model.outputs(X),
                "onnxruntime": lambda logits=logits: logits.run(None, {"input": X})[0],
                "torch": run_torch,
            }
            outputs = {engine: run() for engine, run in engines.items()}
            times = {engine: [] for engine in engines}
            for _ in range(args.repeats):
                for engine, run in engines.items():
                    start = time.perf_counter()
                    run()
                    times[engine].append(time.perf_counter() - start)
            ours = outputs["chainrule"]
            p_ours = model.predict_proba(X)
            p_onnx = probs.run(None, {"input": X})[0]
            print(f"\n{name}: {model!r}")
            print(
                f"  {'engine':<12} {'max |Δ output|':>15} {'max |Δ p|':>11} {'predictions ≠':>14} "
                f"{'accuracy':>9} {'ms':>8}"
            )
            for engine, out_ in outputs.items():
                delta_p = float(np.max(np.abs(p_onnx - p_ours))) if engine == "onnxruntime" else None
                differ = int(np.sum(out_.argmax(axis=1) != ours.argmax(axis=1)))
                accuracy = float(np.mean(out_.argmax(axis=1) == y))
                ms = 1000 * statistics.median(times[engine])
                print(
                    f"  {engine:<12} {float(np.max(np.abs(out_ - ours))):>15.3g} "
                    f"{'' if delta_p is None else f'{delta_p:.3g}':>11} {differ:>14} {accuracy:>9.4f} {ms:>8.1f}"
                )


if __name__ == "__main__":
    main()
