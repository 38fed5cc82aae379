#!/usr/bin/env bash
# The tests whose results come out of CPU kernels (speech recognition, OCR, embeddings, search
# rankings), rerun under other instruction sets and thread counts than this machine's defaults, so a
# test that passes on one CPU only fails here before it fails for a user on another (issue 28: the
# int8 tiny.en heard "blinks amber" as "link Sam were" with AVX2 kernels, "link is amber" without).
#
#   tests/cpu_variants.sh                                   # generic-1 and avx2-1, default tests
#   tests/cpu_variants.sh generic-2 avx512-1 -- tests/lib/ingest/test_asr.py -k speech
#
# A variant is ISA-THREADS: ISA one of generic (SSE4.2 at most), avx, avx2, avx512, native (this
# CPU's own choice); THREADS the thread count of every library. What each library is told:
#   CTranslate2 (faster-whisper)  CT2_FORCE_CPU_ISA, OMP_NUM_THREADS
#   torch (dense, embeddings)     ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS,
#                                 OMP_NUM_THREADS, MKL_NUM_THREADS
#   numpy and its OpenBLAS        NPY_DISABLE_CPU_FEATURES, OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS
#   OpenCV (RapidOCR's images)    OPENCV_CPU_DISABLE
#   onnxruntime (RapidOCR)        threads only (MMRAG_TEST_ORT_THREADS, read by tests/conftest.py):
#                                 it has no switch for its instruction set
# Forcing an instruction set the CPU lacks (avx512 on most laptops) crashes CTranslate2: pick below
# what the machine has. Subprocesses (`mmrag serve` in tests/web) inherit all but the onnxruntime pin.
# Prints, per variant, the sample speech's transcript with its word error rate, then pytest's summary;
# exits non-zero if any variant failed.
set -uo pipefail
cd "$(dirname "$0")/.."

variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#variants[@]} -eq 0 ] && variants=(generic-1 avx2-1)
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/lib/ingest/test_asr.py tests/lib/ingest/test_ocr.py tests/lib/ingest/test_ocr_pages.py
         tests/lib/index/test_dense.py tests/lib/index/test_embedding_lite.py tests/lib/index/test_first_stage.py
         tests/lib/search/test_rerank.py
         tests/integration/test_ocr.py tests/integration/test_search.py)
fi

isa_env() {  # sets the array ENVS to NAME=VALUE words for one instruction set
  local npy_v3="NPY_DISABLE_CPU_FEATURES=X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
  case "$1" in
    generic) ENVS=(CT2_FORCE_CPU_ISA=GENERIC ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41
                   MKL_ENABLE_INSTRUCTIONS=SSE4_2 OPENBLAS_CORETYPE=Nehalem "$npy_v3"
                   OPENCV_CPU_DISABLE=AVX,FP16,AVX2,AVX512-SKX) ;;
    avx)     ENVS=(CT2_FORCE_CPU_ISA=AVX ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX
                   MKL_ENABLE_INSTRUCTIONS=AVX OPENBLAS_CORETYPE=Sandybridge "$npy_v3"
                   OPENCV_CPU_DISABLE=FP16,AVX2,AVX512-SKX) ;;
    avx2)    ENVS=(CT2_FORCE_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
                   MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
                   "NPY_DISABLE_CPU_FEATURES=X86_V4 AVX512_ICL AVX512_SPR" OPENCV_CPU_DISABLE=AVX512-SKX) ;;
    avx512)  ENVS=(CT2_FORCE_CPU_ISA=AVX512 ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE
                   MKL_ENABLE_INSTRUCTIONS=AVX512 OPENBLAS_CORETYPE=SkylakeX) ;;
    native)  ENVS=() ;;
    *) echo "unknown instruction set '$1' (generic, avx, avx2, avx512, native)" >&2; return 2 ;;
  esac
}

failed=()
for v in "${variants[@]}"; do
  isa="${v%-*}" threads="${v##*-}"
  if [ "$isa" = "$v" ] || ! [[ "$threads" =~ ^[1-9][0-9]*$ ]]; then
    echo "variant '$v': expected ISA-THREADS, e.g. generic-1" >&2; exit 2
  fi
  isa_env "$isa" || exit 2
  envs_list=("${ENVS[@]}"
              "OMP_NUM_THREADS=$threads" "MKL_NUM_THREADS=$threads" "OPENBLAS_NUM_THREADS=$threads"
              "MMRAG_TEST_ORT_THREADS=$threads")
  echo "==== $v: ${envs_list[*]}"
  env "${envs_list[@]}" uv run python - <<'EOF'
from mmrag_assets.config import section
from mmrag_assets.fixtures.sample_corpus import SPEECH_AUDIO, SPEECH_TEXT
from mmrag_assets.lib.ingest.asr import transcribe
from tests.tolerance import word_error_rate

said = " ".join(w.text for w in transcribe(SPEECH_AUDIO, section("asr", device="cpu")).words)
print(f"speech (asr defaults): WER {word_error_rate(SPEECH_TEXT.read_text(), said):.2f}: {said}")
EOF
  start=$SECONDS
  if env "${envs_list[@]}" uv run pytest -q -p no:cacheprovider "${tests[@]}"; then
    echo "==== $v: passed in $((SECONDS - start)) s"
  else
    echo "==== $v: FAILED in $((SECONDS - start)) s"
    failed+=("$v")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "failed variants: ${failed[*]}"; exit 1; }
