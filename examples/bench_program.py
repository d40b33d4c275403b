"""Benchmark a clang-built BPF program in both engines: BPF_PROG_TEST_RUN-style runs and the bench table.

    python examples/bench_program.py [OBJECT.o --program NAME]

Without arguments it builds examples/bench_program.c with clang (-O2 -target bpf) when clang is installed,
else it times the committed fixture tests/elf/calls.o (program prog_a): one `vm.test_run` (the kernel's
BPF_PROG_TEST_RUN), then the table of `bpfjit bench OBJECT.o --program NAME --data CTX`.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bpfjit import VM, ObjectFile, pt_regs

HERE = Path(__file__).resolve().parent


def build(tmp: Path) -> tuple[Path, str]:
    """(object, program name): examples/bench_program.c built with clang, or the committed fixture."""
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang:
        out = tmp / "bench_program.o"
        arch = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
        cmd = [clang, "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch}-linux-gnu", "-D__TARGET_ARCH_x86",
               "-c", str(HERE / "bench_program.c"), "-o", str(out)]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return out, "slow_reads"
    return HERE.parent / "tests" / "elf" / "calls.o", "prog_a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("object", nargs="?")
    ap.add_argument("--program")
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        obj_path, name = (Path(args.object), args.program) if args.object else build(Path(tmp))
        obj = ObjectFile.open(obj_path)
        loaded = obj.load(programs=[name])
        prog, rt = loaded.programs[name], loaded.runtime
        regs = pt_regs(di=7, si=4096).tobytes()
        res = VM(prog, "jit", runtime=rt).test_run(ctx_in=regs, repeat=args.repeat)
        print(f"{obj_path.name}:{name} retval={res.retval} duration={res.duration} ns/run (jit, test_run)")
        # the same program through the CLI: a table per engine and mode
        ctx = Path(tmp) / "ctx.bin"
        ctx.write_bytes(regs)
        sys.stdout.flush()
        subprocess.run([sys.executable, "-m", "bpfjit", "bench", str(obj_path), "--program", name, "--data",
                        str(ctx), "--repeat", str(args.repeat)], check=True)


if __name__ == "__main__":
    main()
