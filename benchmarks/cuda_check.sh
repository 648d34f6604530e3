#!/bin/bash
# The CUDA path of every model family, in about a minute on one GPU: each trains a few steps,
# resumes, is scored (ganrun eval) and sampled (ganrun sample) on the GPU, all families at once;
# one run also moves CPU -> GPU -> CPU. Prints "<family>: ok" or "<family>: <stage> FAILED" per
# family and exits non-zero if any failed; logs stay in the work folder.
#
#   benchmarks/cuda_check.sh <data root holding MNIST/raw> [work folder] [device]
#
# Runs `python3 -m ganrun` (PYTHON overrides it) from the checkout's src/, so it needs no
# install beyond ganrun's dependencies. device: cuda (default); cpu runs the same checks on a CPU.
# CHECKS="bigan cyclegan" runs only the checks named (the names it prints), for a short slot.
set -u
DATA=$(realpath "${1:?usage: cuda_check.sh <data root> [work folder] [device]}")
W=$(realpath -m "${2:-/tmp/ganrun_cuda_check}")
DEV=${3:-cuda}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$W"
cd "$W" || exit 2
$PY -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" || exit 2

STEPS=20
COMMON=(train.batch_size=16 train.log_every=5 train.sample_every=10 train.checkpoint_every=10
        train.num_samples=16 "data.root=$DATA")
FAST=(eval=fast eval.num_samples=200 eval.num_real=150 eval.kid_subsets=5
      eval.kid_subset_size=50 eval.classifier_epochs=1)
pids=()
wanted() { [ -z "${CHECKS:-}" ] || [[ " $CHECKS " == *" $1 "* ]]; }

# family <name> <eval overrides, ';'-separated> <sample overrides, ';'-separated> <train...>
family() {
  local name=$1 evals=$2 samples=$3
  shift 3
  wanted "$name" || return 0
  local d=$W/$name log=$W/$name.log
  IFS=';' read -r -a ev <<<"$evals"
  IFS=';' read -r -a sa <<<"$samples"
  (
    run() { "$PY" -m ganrun "$@" >>"$log" 2>&1; }
    rm -rf "$d" "$log"
    run train device="$DEV" "${COMMON[@]}" "$@" train.steps=$STEPS hydra.run.dir="$d" \
      || { echo "$name: train FAILED"; exit 1; }
    run train device="$DEV" "${COMMON[@]}" "$@" train.steps=$((STEPS + 10)) resume=auto \
      hydra.run.dir="$d" || { echo "$name: resume FAILED"; exit 1; }
    run eval checkpoint="$d/checkpoints/last.pt" device="$DEV" "${ev[@]}" \
      || { echo "$name: eval FAILED"; exit 1; }
    run sample checkpoint="$d/checkpoints/last.pt" device="$DEV" n=16 "${sa[@]}" \
      || { echo "$name: sample FAILED"; exit 1; }
    echo "$name: ok"
  ) &
  pids+=($!)
}
F=$(IFS=";"; echo "${FAST[*]}")
family gan "$F" "" model=gan data=digits
family dcgan_conditional_ema "$F" "" model=dcgan data=digits model.width=8 \
  model.conditional=true model.ema_decay=0.99
family dcgan_bf16 "$F" "" model=dcgan data=digits model.width=8 trainer.precision=bf16
[ "$DEV" = cuda ] && family dcgan_fp16 "$F" "" model=dcgan data=digits model.width=8 \
  trainer.precision=fp16
family wgan "$F" "" model=wgan data=digits model.width=8
family wgan_gp "$F" "" model=wgan_gp data=digits model.width=8
family vae "$F" "" model=vae data=digits model.g_hidden=[64]
family ae "$F" "" model=ae data=digits model.g_hidden=[32]
family gan_gauss1d "eval=fast" "sample.format=npz" model=gan data=gauss1d
family ssgan "eval.metrics=[test_error]" "" model=ssgan data=mnist data.labels_per_class=10
family bigan "eval.metrics=[knn_acc,linear_acc,recon_mse];eval.representation_examples=1000" "" \
  model=bigan data=mnist
family cyclegan "eval=translation;eval.test_examples=500;eval.classifier_epochs=1" "" \
  model=cyclegan data=mnist_digits data.resolution=16 model.width=8 model.d_width=8 model.blocks=2
family srresnet "eval=superres;eval.test_examples=500;eval.classifier_epochs=1" "" \
  model=srresnet data=mnist model.width=16 model.blocks=2

# EM runs one iteration per step and train.steps follows model.max_iter: no resume stage.
if wanted gmm; then
(
  d=$W/gmm log=$W/gmm.log
  rm -rf "$d" "$log"
  "$PY" -m ganrun train device="$DEV" model=gmm data=digits model.max_iter=5 \
    hydra.run.dir="$d" >"$log" 2>&1 || { echo "gmm: train FAILED"; exit 1; }
  "$PY" -m ganrun eval checkpoint="$d/checkpoints/last.pt" device="$DEV" "${FAST[@]}" \
    >>"$log" 2>&1 || { echo "gmm: eval FAILED"; exit 1; }
  "$PY" -m ganrun sample checkpoint="$d/checkpoints/last.pt" device="$DEV" n=16 >>"$log" 2>&1 \
    || { echo "gmm: sample FAILED"; exit 1; }
  echo "gmm: ok"
) &
pids+=($!)
fi

# One run moves between devices: the second and third resumes must say so in train.log.
if wanted moves; then
(
  d=$W/moves log=$W/moves.log
  rm -rf "$d" "$log"
  a=(model=dcgan data=digits model.width=8 train.batch_size=16 train.checkpoint_every=5
     hydra.run.dir="$d")
  "$PY" -m ganrun train device=cpu "${a[@]}" train.steps=10 >"$log" 2>&1 \
    && "$PY" -m ganrun train device="$DEV" "${a[@]}" train.steps=20 resume=auto >>"$log" 2>&1 \
    && "$PY" -m ganrun train device=cpu "${a[@]}" train.steps=30 resume=auto >>"$log" 2>&1 \
    || { echo "moves: FAILED"; exit 1; }
  moved=$(grep -c "another kind of device" "$d/train.log")
  want=2
  [ "$DEV" = cpu ] && want=0
  [ "$moved" -eq "$want" ] && echo "moves: ok" || { echo "moves: FAILED ($moved moves logged)"; exit 1; }
) &
pids+=($!)
fi

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
echo "cuda_check: ${#pids[@]} checks, $failed failed (logs in $W)"
[ "$failed" -eq 0 ]
