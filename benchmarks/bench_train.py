"""Training throughput of ``python -m lediff_train`` against a minimal plain-PyTorch loop.

    bash scripts/bench.sh bench_train [--steps 25] [--repeat 3] [--batch-size 4] [--size 64] [--threads 1]
                                      [--unet fixture|wide] [--stages ...] [--skip-processes] [--profile STAGE]

Set-up (a temp folder): the tiny official-layout MODEL of tests/train_models.write_lediff_model
(``--unet wide``: the same folder with a wider UNet, 128-256-256 channels, 4x the fixture's step
time), data prepared from the 8 CC0 HDRIs of tests/data/hdri (``--size`` crops, 2 views each).

Cases, each a fresh child process, interleaved round by round in alternating order
(bench_common.timed_rounds), ``--threads`` torch threads per process (default 1: on a shared
machine OpenMP's barriers stall when another job holds a core; "1 process, N threads" shows it):
  decoder_l1    python -m lediff_train decoder --lpips-weight 0 --gan-weight 0
  decoder_gan   ... --lpips-weight 0 --gan-weight 0.5 --gan-start 0 (PatchGAN + adaptive weight from
                step 0; LPIPS left out: its backbone's pretrained weights are not in torch's cache here)
  denoiser      python -m lediff_train denoiser --direction highlight
each against ``plain``: the same model (lediff_train.models / decoder.HDRDecoderModel, the UNet and
CLIP text encoder), the same batches (lediff_train.data.LatentData in the same sample order) and
the same loss written out here, torch.optim.Adam, backward, step: no accelerate, no logging, no
per-sample generators, no NaN check. And 1 vs 2 processes (``python -m torch.distributed.run
--nproc_per_node 2``, gloo) for decoder_l1, with the per-process batch halved (same global batch)
and with the same per-process batch.

Timing excludes start-up and the end-of-run checkpoint: our runs log ``train/steps_per_s`` =
k / (seconds since the loop started) after every step k (RUN/logs/metrics.csv, --report-to csv),
so step k took k/r_k - (k-1)/r_(k-1); the plain loop times its steps the same way. The first two
steps (kernel selection, allocator warm-up) are dropped and the median step of 3..N is used, which
a shared machine's stalls do not move. Start-up (imports, model loading) plus the end checkpoint
is reported separately: wall time minus the loop's. Peak memory: each process's VmHWM (peak
resident set), polled from /proc while it runs; for torchrun the largest process and the sum
(launcher + workers). ``--profile STAGE``: our run under cProfile, the loop's time per piece.
Flags of our runs: --report-to csv --validate-every 0 --checkpoint-every 10^9.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_common import paired_ratio, timed_rounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HDRI = os.path.join(ROOT, "tests", "data", "hdri")
WARMUP_STEPS = 2
WIDE_UNET = {"block_out_channels": [128, 256, 256], "attention_head_dim": 8}
GAN_WEIGHT = 0.5
CAPTION_DROPOUT = 0.05
STAGES = {
    "decoder_l1": ["decoder", "--lpips-weight", "0", "--gan-weight", "0"],
    "decoder_gan": ["decoder", "--lpips-weight", "0", "--gan-weight", str(GAN_WEIGHT), "--gan-start", "0"],
    "denoiser": ["denoiser", "--direction", "highlight", "--caption-dropout", str(CAPTION_DROPOUT)],
}


# ----------------------------------------------------------------------------------------- set-up
def set_up(work: str, size: int, unet: str) -> tuple[str, str]:
    """(MODEL, DATA) under ``work``."""
    from lediff_train.prepare import prepare
    from support.train_models import write_lediff_model, write_text_parts

    if unet == "wide":
        from support.tiny_models import UNET_CONFIG, write_official_folder

        model = write_official_folder(work, "LEDiff_highlight", unet_config={**UNET_CONFIG, **WIDE_UNET})
        write_text_parts(model)
    else:
        model = write_lediff_model(work)
    data = os.path.join(work, "data")
    prepare(HDRI, model, data, size=size, views=2, seed=0, log=lambda *a, **k: None)
    return model, data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _peak_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def run_child(cmd: list[str], env: dict, log: str) -> tuple[float, list[int]]:
    """(wall seconds, peak RSS in kB of each process of the command's tree).

    The peaks are polled from /proc (VmHWM) while it runs: ``ru_maxrss`` of the reaped child would
    count the parent's RSS at fork and a spike of the interpreter's teardown (~180 MB for torch)."""
    start = time.perf_counter()
    peaks: dict[int, int] = {}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        while proc.poll() is None:
            for pid in _tree(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), _peak_kb(pid))
            time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return wall, [peaks[p] for p in sorted(peaks)]


def child_env(threads: int) -> dict:
    path = os.pathsep.join([ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "scripts")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}


def step_times_from_metrics(run: str) -> list[float]:
    """Seconds of each step of a run, from the cumulative rate it logs after every step."""
    rates = {}
    with open(os.path.join(run, "logs", "metrics.csv"), newline="") as f:
        for step, name, value in csv.reader(f):
            if name == "train/steps_per_s":
                rates[int(step)] = float(value)
    ends = [0.0] + [k / rates[k] for k in range(1, max(rates) + 1)]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


class Cases:
    """Builds and runs the cases of one benchmark run; ``results[name]`` collects one dict per round."""

    def __init__(self, args, work: str, model: str, data: str):
        self.args, self.work, self.model, self.data = args, work, model, data
        self.threads = args.threads
        self.results: dict[str, list[dict]] = {}
        self.count = 0

    def _out(self, name: str) -> str:
        self.count += 1
        return os.path.join(self.work, f"{name}-{self.count}")

    def ours(self, stage: str, processes: int = 1, batch: int | None = None, threads: int | None = None) -> dict:
        """Our CLI; ``threads``: torch's threads in each process."""
        batch = batch or self.args.batch_size
        out = self._out(stage)
        flags = [*STAGES[stage], "--data", self.data, "--model", self.model, "--out", out,
                 "--steps", str(self.args.steps), "--batch-size", str(batch), "--seed", "0",
                 "--report-to", "csv", "--validate-every", "0", "--checkpoint-every", str(10**9)]
        if processes == 1:
            cmd = [sys.executable, "-m", "lediff_train", *flags]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "lediff_train", *flags]
        wall, rss = run_child(cmd, child_env(threads or self.threads), out + ".log")
        steps = step_times_from_metrics(out)
        if not self.args.keep:
            shutil.rmtree(out, ignore_errors=True)
        return {"steps": steps, "wall": wall, "rss_kb": rss, "samples_per_step": batch * processes}

    def plain(self, stage: str) -> dict:
        out = self._out("plain-" + stage) + ".json"
        spec = {"stage": stage, "model": self.model, "data": self.data, "steps": self.args.steps,
                "batch_size": self.args.batch_size, "seed": 0, "out": out}
        cmd = [sys.executable, "-m", "benchmarks.bench_train", "--plain-child", json.dumps(spec)]
        wall, rss = run_child(cmd, child_env(self.threads), out + ".log")
        with open(out) as f:
            steps = json.load(f)["steps"]
        return {"steps": steps, "wall": wall, "rss_kb": rss, "samples_per_step": self.args.batch_size}

    def case(self, name: str, fn, *a, **k):
        def go():
            self.results.setdefault(name, []).append(fn(*a, **k))

        return go


# ------------------------------------------------------------------------------ the plain loops
def plain_child(spec: dict) -> None:
    """In a fresh process: the minimal training loop of one stage; writes its step times."""
    import torch

    from lediff_train import models
    from lediff_train.data import LatentData
    from lediff_train.engine import data_indices

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = LatentData(spec["data"], "train")
    b, steps, model = spec["batch_size"], spec["steps"], spec["model"]
    # the very sample order our runs use (a pure function of seed and position)
    batches = [data_indices(list(range(s * b, (s + 1) * b)), len(data), spec["seed"]) for s in range(steps)]
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])

    if spec["stage"].startswith("decoder"):
        from lediff_train import losses
        from lediff_train.decoder import BETAS, HDRDecoderModel

        folder = models.read_model(model)
        vae = folder.load_vae()
        net = HDRDecoderModel(vae, folder.load_fusion(vae.latent_channels)).to(device)
        opts = [torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-6, betas=BETAS)]
        disc = None
        if spec["stage"] == "decoder_gan":
            disc = losses.PatchDiscriminator().to(device)
            opts.append(torch.optim.Adam(disc.parameters(), lr=1e-6, betas=BETAS))

        def loss_of(batch):
            out = net(batch["c_minus"], batch["c0"], batch["c_plus"])
            target = batch["log_hdr"]
            loss = (out - target).abs().mean()
            if disc is not None:
                disc.requires_grad_(False)
                g_loss = -disc(out).mean()
                disc.requires_grad_(True)
                weight = losses.adaptive_weight(loss, g_loss, net.vae.decoder.conv_out.weight) * GAN_WEIGHT
                real, fake = disc(torch.cat([target, out.detach()])).chunk(2)
                loss = loss + weight * g_loss + losses.hinge_d_loss(real, fake)
            return loss
    else:
        import torch.nn.functional as F

        folder = models.read_model(model)
        unet, _ = folder.load_unet()
        unet.to(device)
        text = models.CaptionEncoder(folder.text_source())
        text.model.to(device)
        schedule = folder.noise_schedule()
        alphas = schedule.alphas_cumprod.to(device)
        n_t = schedule.config.num_train_timesteps
        opts = [torch.optim.Adam(unet.parameters(), lr=1e-5)]

        def loss_of(batch):
            target, cond = batch["c0"], batch["c_plus"]
            t = torch.randint(0, n_t, (len(target),), generator=gen).to(device)
            noise = torch.randn(target.shape, generator=gen).to(device)
            keep = torch.rand(len(target), generator=gen) >= CAPTION_DROPOUT
            context = text([c if k else "" for c, k in zip(batch["caption"], keep.tolist(), strict=True)], device)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * target + (1 - a).sqrt() * noise
            pred = unet(torch.cat([noisy, cond], 1), t, encoder_hidden_states=context).sample
            return F.mse_loss(pred, noise)

    times, last = [], time.perf_counter()
    for idx in batches:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in data.get(idx).items()}
        loss_of(batch).backward()
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    with open(spec["out"], "w") as f:
        json.dump({"steps": times}, f)


# ------------------------------------------------------------------------------------- reporting
def step_time(result: dict) -> float:
    """Median seconds per sample over the steps after the warm-up."""
    return statistics.median(result["steps"][WARMUP_STEPS:]) / result["samples_per_step"]


def summary(rounds: list[dict]) -> dict:
    per_sample = [step_time(r) for r in rounds]
    loop = [sum(r["steps"]) for r in rounds]
    return {"samples_per_s": 1 / statistics.median(per_sample),
            "fixed_s": statistics.median(r["wall"] - t for r, t in zip(rounds, loop, strict=True)),
            "rss_mb": max(max(r["rss_kb"]) for r in rounds) / 1024,
            "rss_all_mb": max(sum(r["rss_kb"]) for r in rounds) / 1024, "per_sample": per_sample}


# (file name, function) of the pieces of our loop, for the profile's per-step table
PIECES = {
    "stage loss (forward, loss, its logs)": [("decoder.py", "loss"), ("denoiser.py", "loss")],
    "backward (accelerate's)": [("accelerator.py", "backward")],
    "optimizer steps": [("optimizer.py", "wrapper")],
    "zero_grad": [("optimizer.py", "zero_grad")],
    "batch (LatentData.get, to device)": [("engine.py", "_batch")],
    "NaN check (gather)": [("engine.py", "_check_finite")],
    "per-sample generators": [("engine.py", "sample_generators")],
    "sample positions": [("engine.py", "sample_positions")],
    "accumulate context": [("accelerator.py", "accumulate")],
    "logger (csv row + flush)": [("engine.py", "scalars")],
    "progress bar": [("std.py", "update"), ("std.py", "set_postfix")],
}
WORK = ("stage loss (forward, loss, its logs)", "backward (accelerate's)", "optimizer steps", "zero_grad",
        "batch (LatentData.get, to device)")


def profile(args, cases: Cases, stage: str) -> None:
    """Our run of ``stage`` under cProfile: where the loop's time goes, per step."""
    import pstats

    out = cases._out("profile-" + stage)
    prof = out + ".prof"
    flags = [*STAGES[stage], "--data", cases.data, "--model", cases.model, "--out", out,
             "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--report-to", "csv",
             "--validate-every", "0", "--checkpoint-every", str(10**9)]
    run_child([sys.executable, "-m", "cProfile", "-o", prof, "-m", "lediff_train", *flags],
              child_env(cases.threads), out + ".log")
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

    def cumulative(keys):
        return sum(v[3] for (f, _, n), v in stats.items() if any(f.endswith("/" + a) and n == b for a, b in keys))

    loop = cumulative([("engine.py", "train")]) - cumulative([("engine.py", "save_checkpoint")])
    print(f"\ncProfile of our {stage} run, {args.steps} steps: the loop (end checkpoint excluded) "
          f"{1000 * loop / args.steps:.1f} ms/step; per piece (cProfile inflates Python-heavy pieces):")
    book = 0.0
    for name, keys in PIECES.items():
        t = cumulative(keys)
        book += 0.0 if name in WORK else t
        print(f"  {name:<40} {1000 * t / args.steps:8.2f} ms/step {100 * t / loop:6.1f} %")
    label = "our bookkeeping (the rows after batch)"
    print(f"  {label:<40} {1000 * book / args.steps:8.2f} ms/step {100 * book / loop:6.1f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="optimizer steps per run (the first 2 are dropped)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per step (one process)")
    parser.add_argument("--size", type=int, default=64, help="crop size of the prepared data")
    parser.add_argument("--unet", choices=("fixture", "wide"), default="fixture")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--skip-processes", action="store_true", help="no 1-vs-2-process comparison")
    parser.add_argument("--profile", choices=tuple(STAGES), help="also profile our run of this stage")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (OMP_NUM_THREADS); 1: a shared machine's load does not "
                             "stall OpenMP's barriers")
    parser.add_argument("--json", help="also write every round's step times to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (printed)")
    parser.add_argument("--plain-child", help=argparse.SUPPRESS)
    parser.add_argument("--setup-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        return plain_child(json.loads(args.plain_child))
    if args.setup_child:
        spec = json.loads(args.setup_child)
        with open(os.path.join(spec["work"], "setup.json"), "w") as f:
            json.dump(set_up(spec["work"], spec["size"], spec["unet"]), f)
        return None
    if args.steps <= WARMUP_STEPS + 2:
        parser.error(f"--steps must be more than {WARMUP_STEPS + 2}")
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown --stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if not args.skip_processes and "decoder_l1" not in stages:
        parser.error("the 1-vs-2-process comparison needs the decoder_l1 stage (or pass --skip-processes)")
    if not args.skip_processes and args.batch_size % 2:
        parser.error("--batch-size must be even for the 2-process comparison (halved per process)")

    work = tempfile.mkdtemp(prefix="bench_train_")
    try:
        started = time.perf_counter()
        load = os.getloadavg()[0]
        # in a child: this process stays free of torch, so that the children's peak RSS (which on
        # Linux starts from the parent's at fork) is their own
        spec = json.dumps({"work": work, "size": args.size, "unet": args.unet})
        run_child([sys.executable, "-m", "benchmarks.bench_train", "--setup-child", spec], child_env(1),
                  os.path.join(work, "setup.log"))
        with open(os.path.join(work, "setup.json")) as f:
            model, data = json.load(f)
        cases = Cases(args, work, model, data)
        _, base = run_child([sys.executable, "-c", "import time, torch; time.sleep(1)"], child_env(1),
                            os.path.join(work, "baseline.log"))
        base_rss = max(base)
        fns = []
        for stage in stages:
            fns += [cases.case(f"ours {stage}", cases.ours, stage), cases.case(f"plain {stage}", cases.plain, stage)]
        if not args.skip_processes:
            half = args.batch_size // 2
            cores = os.cpu_count() or 1
            fns += [cases.case(f"1 process, {cores} threads", cases.ours, "decoder_l1", 1, None, cores),
                    cases.case("2 processes, same global batch", cases.ours, "decoder_l1", 2, half),
                    cases.case("2 processes, same per-process batch", cases.ours, "decoder_l1", 2)]
        timed_rounds(fns, args.repeat)
        cores = os.cpu_count() or 1
        print(f"lediff_train training throughput: {cores} CPUs (load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end), {args.threads} torch thread(s) per process, "
              f"{args.size}-px crops ({args.size // 8}-px latents), {args.unet} UNet, batch {args.batch_size}, "
              f"{args.steps} steps per run (median step of 3..N), {args.repeat} interleaved rounds")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(cases.results, f)
        res = {name: summary(rounds) for name, rounds in cases.results.items()}
        print(f"\n{'case':<38} {'samples/s':>9} {'ms/sample':>9} {'start+end s':>11} {'peak RSS MB':>11} "
              f"{'(all procs)':>11}")
        for name, r in res.items():
            print(f"{name:<38} {r['samples_per_s']:>9.2f} {1000 / r['samples_per_s']:>9.1f} {r['fixed_s']:>11.1f} "
                  f"{r['rss_mb']:>11.0f} {r['rss_all_mb']:>11.0f}")
        print(f"{'(import torch alone)':<38} {'':>9} {'':>9} {'':>11} {base_rss / 1024:>11.0f}")
        print("\noverhead (ours / plain time per sample, median over rounds of the paired ratio; target <= 1.10):")
        for stage in stages:
            ours, plain = res[f"ours {stage}"]["per_sample"], res[f"plain {stage}"]["per_sample"]
            rounds = ", ".join(f"{o / p:.3f}" for o, p in zip(ours, plain, strict=True))
            print(f"  {stage:<14} {paired_ratio(ours, plain):.3f}  (rounds: {rounds})")
        if not args.skip_processes:
            one = res["ours decoder_l1"]["per_sample"]
            print(f"\n1 vs 2 processes (decoder L1, gloo; {args.threads} thread(s) each unless said), samples/s "
                  "relative to 1 process (paired over rounds):")
            for name in (f"1 process, {cores} threads", "2 processes, same global batch",
                         "2 processes, same per-process batch"):
                print(f"  {name:<38} {paired_ratio(one, res[name]['per_sample']):.2f}x")
        if args.profile:
            profile(args, cases, args.profile)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
