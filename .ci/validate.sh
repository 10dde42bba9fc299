#!/usr/bin/env bash
# Checks the deployment manifests offline against the real Kubernetes API
# schemas, rejecting unknown fields (kubectl cannot do that without a server):
#
#   bash .ci/validate.sh
#
# Validates every manifest file in manifests/ (the examples that are not
# applied by default included; kustomization.yaml is kustomize's, not the
# API's) and what `kubectl kustomize manifests/` renders, with
# kubernetes-validate --strict, for each Kubernetes version in
# WM_KUBE_VERSIONS (default: the newest the package ships and one four minors
# older, for nodes that lag behind). kubernetes-validate only warns about a
# kind or apiVersion it has no schema for, so any warning fails here too.
# First it makes sure the validator rejects known-bad manifests, so a
# permissive validator cannot pass everything silently.
#
# kubernetes-validate (pinned) is installed into a venv (WM_VALIDATE_VENV,
# default ~/.cache/wm-validate-venv) unless it is already there. Needs
# python3 and kubectl (.ci/run installs kubectl).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${WM_VALIDATE_VENV:-$HOME/.cache/wm-validate-venv}"
PACKAGE_VERSION=1.37.0
VERSIONS="${WM_KUBE_VERSIONS:-1.33.0 1.37.0}"
KUBECTL="${KUBECTL:-kubectl}"
VALIDATE="$VENV/bin/kubernetes-validate"

say() { echo "validate.sh: $*" >&2; }

installed() {
  [ -x "$VALIDATE" ] && [ "$("$VALIDATE" --version 2>/dev/null)" = "$PACKAGE_VERSION" ]
}

if ! installed; then
  say "installing kubernetes-validate==$PACKAGE_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$PACKAGE_VERSION" >&2
  installed || { say "kubernetes-validate $PACKAGE_VERSION did not install"; exit 1; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs the validator on the given files for one version; fails on any error
# or warning, or when no resource passed.
check() {
  local version=$1; shift
  local out
  if ! out=$("$VALIDATE" --strict --kubernetes-version "$version" "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
  if printf '%s\n' "$out" | grep -v '^INFO .* passed for resource ' | grep -q .; then
    printf '%s\n' "$out" >&2
    say "unexpected output (a kind or apiVersion without a schema?) for: $*"
    return 1
  fi
  if ! printf '%s\n' "$out" | grep -q '^INFO .* passed for resource '; then
    say "no resource validated in: $*"
    return 1
  fi
  printf '%s\n' "$out"
}

# The validator must refuse an unknown field and an unknown apiVersion.
cat >"$work/bad-field.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {a: b}
unknownField: true
EOF
cat >"$work/bad-kind.yaml" <<'EOF'
apiVersion: app/v1
kind: Deployment
metadata: {name: x}
EOF
for bad in bad-field bad-kind; do
  if check "${VERSIONS%% *}" "$work/$bad.yaml" >/dev/null 2>&1; then
    say "the validator accepted $bad.yaml; it would not catch mistakes"
    exit 1
  fi
done

files=()
for f in manifests/*.yaml manifests/*.yml; do
  [ -e "$f" ] || continue
  case "$(basename "$f")" in kustomization.yaml | kustomization.yml) continue ;; esac
  files+=("$f")
done
[ "${#files[@]}" -gt 0 ] || { say "no manifests found in manifests/"; exit 1; }

"$KUBECTL" kustomize manifests/ >"$work/rendered.yaml"

start=$SECONDS
for version in $VERSIONS; do
  check "$version" "${files[@]}"
  check "$version" "$work/rendered.yaml"
done
say "manifests/ valid (--strict) against Kubernetes $VERSIONS, files and kustomize output, in $((SECONDS - start)) s"
