#!/usr/bin/env bash
# Every step / decoding / memory benchmark on one accelerator, with MFU against the device's datasheet peak.
#
#   bash benchmarks/gpu_all.sh [OUT_DIR]            # default OUT_DIR: workdirs/bench_gpu (JSON results there)
#   PEAK_TFLOPS=989 bash benchmarks/gpu_all.sh      # override the peak (else from jax.devices()[0].device_kind:
#                                                   # H100 SXM/PCIe, H200, A100; dense, by compute dtype)
#   QUICK=1 bash benchmarks/gpu_all.sh              # fewer steps / smaller runs (a quick look)
#   bash benchmarks/gpu_all.sh --help
#
# Runs, in order (each step's output is printed and its JSON kept):
#   1. CSLR train step, paper config (SlowFast R101 + BFF + PFE, 224 px, T = 64, batch 2): bfloat16 without remat,
#      bfloat16 with remat 'block', float32 without remat (benchmarks/cslr_step.py);
#   2. S2T train step, paper config (mbart-large-cc25 geometry, T = 29, L = 20, batch 16): bfloat16 without remat,
#      bfloat16 with remat 'layer' (benchmarks/s2t_step.py);
#   3. beam-search generation vs HF generate (benchmarks/generate.py; skipped if torch/transformers are missing);
#   4. CTC decoding throughput (benchmarks/ctc_decode.py);
#   5. peak memory of the CSLR train step at batch 2 with remat none / block / stage, bfloat16 and float32
#      (benchmarks/memory.py, compile only);
# then a summary table of step time, achieved TFLOP/s and MFU. Targets (issue #9, H100): MFU >= 40 % S2T, >= 30 %
# CSLR. Needs a JAX with CUDA (jax[cuda12]) in .venv or on PATH as `python`.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${ROOT}/workdirs/bench_gpu}"
PY="${PYTHON:-${ROOT}/.venv/bin/python}"
[[ -x "${PY}" ]] || PY=python
PEAK=(--peak_tflops "${PEAK_TFLOPS:-0}")
if [[ -n "${QUICK:-}" ]]; then CSLR_STEPS=2; S2T_STEPS=3; else CSLR_STEPS=10; S2T_STEPS=20; fi
mkdir -p "${OUT}"
cd "${ROOT}"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"  # memory.py reads compile stats only

run() {  # run NAME CMD... : print a header, run, keep going on failure (the summary says what failed)
  local name="$1"; shift
  echo
  echo "=== ${name}: $*"
  if ! "$@" 2>&1 | tee "${OUT}/${name}.log"; then
    echo "!!! ${name} failed (see ${OUT}/${name}.log)"
  fi
}

"${PY}" -c "import jax; d = jax.devices()[0]; print('JAX', jax.__version__, '|', jax.default_backend(), '|', \
d.device_kind, '|', jax.device_count(), 'device(s)')" | tee "${OUT}/device.txt"

run cslr_bf16 "${PY}" benchmarks/cslr_step.py --batch 2 --dtype bfloat16 --steps "${CSLR_STEPS}" "${PEAK[@]}" \
  --json "${OUT}/cslr_bf16.json"
run cslr_bf16_remat "${PY}" benchmarks/cslr_step.py --batch 2 --dtype bfloat16 --remat block \
  --steps "${CSLR_STEPS}" "${PEAK[@]}" --json "${OUT}/cslr_bf16_remat.json"
run cslr_f32 "${PY}" benchmarks/cslr_step.py --batch 2 --dtype float32 --steps "${CSLR_STEPS}" "${PEAK[@]}" \
  --json "${OUT}/cslr_f32.json"
run s2t_bf16 "${PY}" benchmarks/s2t_step.py --batch 16 --dtype bfloat16 --steps "${S2T_STEPS}" "${PEAK[@]}" \
  --json "${OUT}/s2t_bf16.json"
run s2t_bf16_remat "${PY}" benchmarks/s2t_step.py --batch 16 --dtype bfloat16 --remat layer \
  --steps "${S2T_STEPS}" "${PEAK[@]}" --json "${OUT}/s2t_bf16_remat.json"
if "${PY}" -c "import torch, transformers" 2>/dev/null; then
  run generate "${PY}" benchmarks/generate.py --batch 16 --beams 5 --max-length 60 --d-model 1024 --layers 12 \
    --heads 16 --vocab 2500 --repeats 3
else
  echo; echo "=== generate: skipped (needs torch + transformers for the HF reference)"
fi
run ctc_decode "${PY}" benchmarks/ctc_decode.py --classes 1296 --frames 100 --batch 32
run memory_bf16 "${PY}" benchmarks/memory.py --batch 2 --dtype bfloat16 --remat none,block,stage \
  --json "${OUT}/memory_bf16.json"
run memory_f32 "${PY}" benchmarks/memory.py --batch 2 --dtype float32 --remat none,block,stage \
  --json "${OUT}/memory_f32.json"

echo
echo "=== summary (${OUT})"
"${PY}" - "${OUT}" <<'EOF'
import json, os, sys
out = sys.argv[1]
print("| run | dtype | remat | step s | TFLOP/s | MFU | peak |")
print("|---|---|---|---|---|---|---|")
for name in ("cslr_bf16", "cslr_bf16_remat", "cslr_f32", "s2t_bf16", "s2t_bf16_remat"):
  path = os.path.join(out, f"{name}.json")
  if not os.path.isfile(path):
    print(f"| {name} | - | - | failed | - | - | - |")
    continue
  r = json.load(open(path))
  mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "n/a"
  print(f"| {name} | {r.get('dtype')} | {r.get('remat')} | {r['step_s_median']:.4f} | "
        f"{r['achieved_gflops'] / 1e3:.1f} | {mfu} | {r.get('peak')} |")
for name in ("memory_bf16", "memory_f32"):
  path = os.path.join(out, f"{name}.json")
  if os.path.isfile(path):
    res = json.load(open(path))["results"]
    print(f"{name}: " + ", ".join(f"{m}: peak {r['peak_bytes'] / 2**30:.2f} GiB (temp {r['temp_bytes'] / 2**30:.2f}, "
                                  f"saved activations {r['saved_activation_bytes'] / 2**30:.2f})"
                                  for m, r in res.items()))
print("targets (issue #9, H100): MFU >= 40 % S2T, >= 30 % CSLR")
EOF
