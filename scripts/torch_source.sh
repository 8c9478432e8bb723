# Sourced by setup.sh and lock.sh: where the CPU build of torch comes from. A folder of local
# wheels (CHROMOSORT_WHEELS, or /opt/wheels when it holds a torch wheel) wins; otherwise PyTorch's
# own CPU index. Sets TORCH_SOURCE (uv options) and exports nothing else.
wheels=${CHROMOSORT_WHEELS:-/opt/wheels}
if compgen -G "$wheels/torch-*+cpu-*.whl" >/dev/null; then
  TORCH_SOURCE=(--find-links "$wheels" --index-strategy unsafe-best-match)
else
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
