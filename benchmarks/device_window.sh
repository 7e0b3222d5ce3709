#!/usr/bin/env bash
# One GPU window: the environment, then the parts named in DEVICE_WINDOW_PARTS (default all, in this order): the
# flex-vs-eager check against an fp32 truth (benchmarks/gpu_check.py), the throughput benchmark's default set with
# a profile of one extra step per configuration (where the time goes), the gpu_smoke training run (interrupted and
# resumed) and, where TRL can be imported (its wheels carried in .whl/, see benchmarks/device_wheels.sh), the
# side-by-side with TRL (benchmarks/versus_trl.py); each under its own `timeout` within DEVICE_WINDOW_SECONDS
# (470 by default); a part that fails or runs out of time is reported and the next one runs; the exit status is 1
# if any part failed. Everything goes to $OUT (default ./device_window_out), 8 files at most (what the device
# tool brings back): device_window.log (all output, the environment's facts first), parts.tsv (part, exit
# status, seconds), gpu_check.json, throughput.json/.md, gpu_smoke.json, gpu_smoke_metrics.jsonl and
# versus_trl.json (written after each round); the smoke run's own folder (checkpoints) stays in $SMOKE_RUN_DIR.
#
#   PYTHONPATH=. bash benchmarks/device_window.sh      # needs no network and no `datasets`
#   DEVICE_WINDOW_PARTS=gpu_check,throughput DEVICE_WINDOW_SECONDS=450 PYTHONPATH=. bash benchmarks/device_window.sh
#   DEVICE_WINDOW_DRY_RUN=1 bash benchmarks/device_window.sh   # the same on CPU with the tiny model (tests)
#
# Measured on an H200 (2026-12-04, torch 2.11, transformers 5.17): throughput 104 s, gpu_smoke 93 s; gpu_check's
# first variant did not finish in 90 s with cold compile caches (the check now runs six passes, not three); TRL's
# first side did not finish in the ~120 s left to it. One device command may run 10 minutes, so the whole set does
# not fit in one: run it as two windows (the parts above, then versus_trl alone with 330 s).
#
# If a folder .whl/ holds wheels, they are installed to /tmp/site first and put on PYTHONPATH (for packages
# the GPU machine lacks; see /work/.library/device/README.md where that machine is lent).
set -u
cd "$(dirname "$0")/.."
# The window's seconds, less the few that `timeout -k` may add to a part that must be killed.
TOTAL_SECONDS=${DEVICE_WINDOW_SECONDS:-470}
PARTS=",${DEVICE_WINDOW_PARTS:-gpu_check,throughput,gpu_smoke,versus_trl},"
for name in ${PARTS//,/ }; do
	case $name in
	gpu_check | throughput | gpu_smoke | versus_trl) ;;
	*)
		echo "DEVICE_WINDOW_PARTS: unknown part '$name' (parts: gpu_check, throughput, gpu_smoke, versus_trl)" >&2
		exit 2
		;;
	esac
done
OUT=${OUT:-device_window_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
DRY_RUN=${DEVICE_WINDOW_DRY_RUN:-0}
SMOKE_RUN_DIR=${SMOKE_RUN_DIR:-$(mktemp -d)/gpu_smoke_run}
LOG=$OUT/device_window.log
# Each part's limit (seconds): the measured time above with room for cold compile caches. The smoke run compiles
# twice (its resumed half compiles afresh, as a new process would, though inductor's caches make that faster).
GPU_CHECK_SECONDS=${GPU_CHECK_SECONDS:-240}
THROUGHPUT_SECONDS=${THROUGHPUT_SECONDS:-200}
SMOKE_SECONDS=${SMOKE_SECONDS:-170}
VERSUS_TRL_SECONDS=${VERSUS_TRL_SECONDS:-320}
: >"$LOG"
: >"$OUT/parts.tsv"

say() { echo "[device_window] $*" | tee -a "$LOG"; }

# wanted NAME: whether DEVICE_WINDOW_PARTS names the part; a part left out is recorded as such.
wanted() {
	[[ $PARTS == *",$1,"* ]] && return 0
	say "$1: not in DEVICE_WINDOW_PARTS; left out"
	printf '%s\tleft out\t0\n' "$1" >>"$OUT/parts.tsv"
	return 1
}

# part NAME SECONDS COMMAND...: run COMMAND under `timeout`, its output to the log and the terminal; the limit is
# SECONDS or what is left of TOTAL_SECONDS, whichever is less.
part() {
	local name=$1 budget=$2 left=$((TOTAL_SECONDS - SECONDS))
	shift 2
	local limit=$((budget < left ? budget : left))
	if ((limit < 5)); then
		say "$name: skipped, the window's $TOTAL_SECONDS s are spent"
		printf '%s\tskipped\t0\n' "$name" >>"$OUT/parts.tsv"
		return
	fi
	say "$name (limit ${limit} s): $*"
	local started=$SECONDS
	timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
	local status=${PIPESTATUS[0]}
	local took=$((SECONDS - started))
	if ((status == 124 || status == 137)); then
		say "$name: TIMED OUT after $took s"
	else
		say "$name: exit $status after $took s"
	fi
	printf '%s\t%s\t%s\n' "$name" "$status" "$took" >>"$OUT/parts.tsv"
}

# The environment's facts to the log (each command under its own timeout: this is not a part of its own).
environment() {
	local started=$SECONDS
	{
		echo "date: $(date -u +%FT%TZ)"
		echo "host: $(uname -srm)"
		if command -v nvidia-smi >/dev/null; then
			timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
			timeout 10 nvidia-smi
		else
			echo "nvidia-smi: not found"
		fi
		timeout 30 "$PYTHON" - <<'PY'
import importlib.metadata as metadata
import platform

print("python", platform.python_version())
for name in ("torch", "transformers", "peft", "safetensors", "tqdm", "tensorboard", "datasets"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "not installed")
try:
    import datasets  # noqa: F401
except ImportError:
    print("datasets importable: no")
else:
    print("datasets importable: yes")
import torch

print("cuda available", torch.cuda.is_available(), "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
PY
	} >/tmp/device_window_env.txt 2>&1
	tee -a "$LOG" </tmp/device_window_env.txt
	printf '%s\t%s\t%s\n' env 0 $((SECONDS - started)) >>"$OUT/parts.tsv"
}

if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
	say "installing the wheels of .whl/ to /tmp/site"
	"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
		export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

environment

if [ "$DRY_RUN" = 1 ]; then
	say "dry run: CPU, tiny model"
	gpu_check_args=(--device cpu --tiny)
	throughput_args=(--config configs/tiny.toml --device cpu --steps 1)
	# 2048: the tiny model's tokenizer makes the demo's eval conversations longer than Gemma's does, and the
	# smoke run must keep its two eval conversations to check the evaluations.
	smoke_args=(
		--model.path=tiny:gemma2 --data.train=demo:eval --train.precision=fp32 --train.max_steps=2 --train.grad_accum_steps=1
		--checkpoint.every_steps=1 --eval.every_steps=2 --data.max_seq_len=2048 --data.max_eval_conversations=2
		--eval.max_cases=1 --eval.max_new_tokens=2
	)
else
	gpu_check_args=()
	throughput_args=()
	smoke_args=()
fi

if wanted gpu_check; then
	part gpu_check "$GPU_CHECK_SECONDS" "$PYTHON" -m benchmarks.gpu_check "${gpu_check_args[@]}" --json "$OUT/gpu_check.json"
fi
if wanted throughput; then
	part throughput "$THROUGHPUT_SECONDS" "$PYTHON" -m benchmarks.throughput "${throughput_args[@]}" --profile \
		--json "$OUT/throughput.json"
fi
if wanted gpu_smoke; then
	part gpu_smoke "$SMOKE_SECONDS" "$PYTHON" -m benchmarks.gpu_smoke "${smoke_args[@]}" --run.out_dir="$SMOKE_RUN_DIR" \
		--json "$OUT/gpu_smoke.json"
	if [ -f "$SMOKE_RUN_DIR/metrics.jsonl" ]; then
		cp "$SMOKE_RUN_DIR/metrics.jsonl" "$OUT/gpu_smoke_metrics.jsonl"
	fi
fi
if wanted versus_trl; then
	if [ "$DRY_RUN" != 1 ] && "$PYTHON" -c "import trl" >/dev/null 2>&1; then
		# Its markdown stays out of $OUT (the JSON holds the same numbers): the device tool returns 8 files at most.
		part versus_trl "$VERSUS_TRL_SECONDS" "$PYTHON" -m benchmarks.versus_trl --device cuda --steps 8 --rounds 2 \
			--json "$OUT/versus_trl.json" --markdown /tmp/versus_trl.md
	else
		say "versus_trl: skipped (dry run, or TRL is not importable: carry its wheels, benchmarks/device_wheels.sh)"
		printf '%s\tskipped\t0\n' versus_trl >>"$OUT/parts.tsv"
	fi
fi

say "parts (name, exit status, seconds), $SECONDS s in all:"
tee -a "$LOG" <"$OUT/parts.tsv"
if awk -F'\t' '$2 != "0" && $2 != "skipped" && $2 != "left out" { failed = 1 } END { exit !failed }' "$OUT/parts.tsv"; then
	say "some parts failed"
	exit 1
fi
