#!/usr/bin/env bash
# The CUDA check, in one call of at most 8 minutes on a machine with an NVIDIA GPU:
#   1. the tests marked `cuda` (they skip with a reason on a machine without a GPU);
#   2. benchmarks/population_step.py, short, on cuda in fp32 and bf16 (ms per training step);
#   3. the default search on --device cuda: one candidate at a time (fp32, bf16, fp16), as a
#      large population (fp32, bf16; an fp16 population trains its members alone), and one
#      trial at a time on the CPU with one thread;
# and prints trials per minute for each search. Run from anywhere:
#   bash benchmarks/gpu_check.sh
# Settings: GPU_CHECK_TRIALS (default 32 per search), GPU_CHECK_POPULATION (default 32),
# GPU_CHECK_DEVICE (default cuda; cpu rehearses the script on a machine without a GPU).
# Every step has a time limit (at most 150 + 2 x 25 + 20 + 6 x 40 s) and each search stops
# starting trials after 20 s, so the whole check stays under 8 minutes; a search cut off still
# reports the trials it finished (a population is recorded when all its members are done: one
# cut off reports nothing).
# The log goes to $OUT/gpu_check.txt when OUT is set (else benchmarks/results/gpu_check.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # subprocesses import this checkout
out_dir="${OUT:-benchmarks/results}"
mkdir -p "$out_dir"
log="$out_dir/gpu_check.txt"
exec > >(tee "$log") 2>&1

python3 -c "import mtl_search, optuna, torch" || { echo "mtl-search's dependencies are not installed"; exit 1; }
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
PY

echo "== tests marked cuda"
timeout 150 python3 -m pytest -q -m cuda -p no:cacheprovider -rs tests || echo "cuda tests: exit $?"

device="${GPU_CHECK_DEVICE:-cuda}"
echo "== benchmarks/population_step.py on $device (short)"
for precision in fp32 bf16; do
  timeout 25 python3 benchmarks/population_step.py --device "$device" --precision "$precision" --rows 20000 \
    --population 8 32 --quick --name "gpu_check_population_step_$precision" 2>&1 | tail -6 \
    || echo "population_step $precision: exit $?"
done

trials="${GPU_CHECK_TRIALS:-32}"
population="${GPU_CHECK_POPULATION:-32}"
work="$(mktemp -d)"
summary="$work/summary.txt"
# a flag another branch may not have yet: used only where this checkout's `run` takes it
threads_flag=""
run_help="$(python3 -m mtl_search run --help)"
[[ "$run_help" == *--threads* ]] && threads_flag="--threads 1"

search() {  # name, device, trials, then more arguments of `mtl-search run`
  local name="$1" device="$2" count="$3"; shift 3
  local started ended rc
  started=$(date +%s.%N)
  timeout "$search_limit" python3 -m mtl_search run --device "$device" --trials "$count" --timeout 20 --quiet \
    --study-name "$name" --storage "sqlite:///$work/gpu.db" "$@" > "$work/$name.log" 2>&1
  rc=$?
  ended=$(date +%s.%N)
  python3 - "$name" "$rc" "$started" "$ended" "sqlite:///$work/gpu.db" <<'PY' | tee -a "$summary"
import sys

import optuna

name, rc, started, ended, storage = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
optuna.logging.set_verbosity(optuna.logging.ERROR)
try:
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
except KeyError:
    trials = []
# trained to the end or pruned; a trial failed by the time limit's SIGTERM is not counted
done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
finished = [t for t in trials if t.state in done and t.datetime_complete is not None]
complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
command = float(ended) - float(started)
line = f"{name:24s} exit {rc:3d}  {len(finished):3d} trials ({complete} complete) in {command:6.1f} s: "
line += f"{60 * len(finished) / command:7.1f} trials/min (whole command)"
if finished:  # from the first trial's start to the last one's end: without start-up and data loading
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    line += f", {60 * len(finished) / max(span, 1e-9):7.1f} trials/min (trials only, {span:.1f} s)"
print(line)
PY
  [ "$rc" -eq 0 ] || tail -3 "$work/$name.log"
}

echo "== default search ($trials trials each, populations of $population)"
search_limit=20
search warmup "$device" 1 > /dev/null  # file caches and lazy imports, not counted
: > "$summary"
search_limit=40
search "$device"-population-1 "$device" "$trials" --population 1
search "$device"-population-1-bf16 "$device" "$trials" --population 1 --precision bf16
search "$device"-population-1-fp16 "$device" "$trials" --population 1 --precision fp16
search "$device"-population-"$population" "$device" "$trials" --population "$population"
search "$device"-population-"$population"-bf16 "$device" "$trials" --population "$population" --precision bf16
# shellcheck disable=SC2086  # $threads_flag: no argument, or two
OMP_NUM_THREADS=1 search cpu-1-thread-population-1 cpu "$trials" --population 1 $threads_flag
echo "== summary"
cat "$summary"
echo "== done; log in $log"
