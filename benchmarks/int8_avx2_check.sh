#!/usr/bin/env bash
# The INT8 tests on an emulated x86 CPU without AVX-512 and VNNI, where onnxruntime's uint8 x int8
# kernels sum pairs of products in saturating 16-bit registers (the INT8 tests also run natively in
# the default suite; a VNNI CPU never saturates, so only this run exercises that path).
#
#   apt-get install -y qemu-user
#   bash benchmarks/int8_avx2_check.sh            # -cpu Haswell: AVX2 + FMA
#   QEMU_CPU=Skylake-Client bash benchmarks/int8_avx2_check.sh
#
# Slow (emulation): about 5 minutes on 2 cores. Extra arguments go to pytest.
# The last run's result is in benchmarks/results/int8_settings.json ("qemu_tests").
set -euo pipefail
cd "$(dirname "$0")/.."
python="$PWD/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python)"
# The venv's python is a link to the real interpreter; qemu runs the real file, and -0 passes the
# venv path as argv[0] so that Python still finds the venv's site-packages.
real="$(readlink -f "$python")"
cpu="${QEMU_CPU:-Haswell}"
# onnxruntime reads the CPU's features with CPUID, which qemu answers for the emulated CPU.
qemu-x86_64 -cpu "$cpu" -0 "$python" "$real" -c \
    'import onnxruntime, platform; print("onnxruntime", onnxruntime.__version__, "under qemu", platform.machine())' \
    2> >(grep -v "TCG doesn't support" >&2)
exec qemu-x86_64 -cpu "$cpu" -0 "$python" "$real" -m pytest -p no:cacheprovider -q \
    tests/compress/test_quantize.py "$@" 2> >(grep -v "TCG doesn't support" >&2)
