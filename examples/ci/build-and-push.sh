#!/usr/bin/env bash
# One CI step: build the app with kiln and push the image to a registry. No Docker daemon,
# no privileges; blobs the registry already has are not uploaded again.
#
#   IMAGE=registry.example/team/app:$GIT_SHA examples/ci/build-and-push.sh [APP_DIR] [kiln build options…]
#
# Credentials for the image's registry, first match wins (never echoed):
#   CREDENTIAL_HELPER=NAME    ask docker-credential-NAME (ecr-login, gcloud, pass, …), which
#                             must be on PATH: the recipe writes a Docker config naming it
#   REGISTRY_USER, REGISTRY_PASSWORD
#                             a user and a password or token (GitHub: $GITHUB_ACTOR and
#                             $GITHUB_TOKEN), handed to kiln as KILN_REGISTRY_AUTH
#   otherwise                 whatever `docker login` / `podman login` stored, or anonymous
#
# Also: KILN (the kiln binary, default `kiln` on PATH), REPORT (the JSON report, default
# kiln-report.json). Prints the pushed digest; under GitHub Actions also sets the step
# outputs `digest` and `image`.
set -euo pipefail

: "${IMAGE:?set IMAGE to the image to push, HOST/REPOSITORY:TAG}"
app="${1:-.}"
shift || true
kiln="${KILN:-kiln}"
report="${REPORT:-kiln-report.json}"

# The registry is the first part of the name when it looks like a host (as Docker reads it).
registry="${IMAGE%%/*}"
if [[ "$registry" == "$IMAGE" || ( "$registry" != *.* && "$registry" != *:* && "$registry" != localhost ) ]]; then
  registry=index.docker.io
fi

if [[ -n "${CREDENTIAL_HELPER:-}" ]]; then
  if ! command -v "docker-credential-$CREDENTIAL_HELPER" >/dev/null; then
    echo "error: docker-credential-$CREDENTIAL_HELPER is not on PATH; install the credential helper first" >&2
    exit 2
  fi
  DOCKER_CONFIG="$(mktemp -d)"
  export DOCKER_CONFIG
  trap 'rm -rf "$DOCKER_CONFIG"' EXIT
  printf '{"credHelpers": {"%s": "%s"}}\n' "$registry" "$CREDENTIAL_HELPER" >"$DOCKER_CONFIG/config.json"
elif [[ -n "${REGISTRY_USER:-}" ]]; then
  export KILN_REGISTRY_AUTH="$REGISTRY_USER:${REGISTRY_PASSWORD:?REGISTRY_USER is set but REGISTRY_PASSWORD is empty}"
fi

"$kiln" build "$IMAGE" --publish --path "$app" --report "$report" "$@"

# The report is kiln's pretty-printed JSON; manifest_digest is a top-level field.
digest="$(sed -n 's/^  "manifest_digest": "\(sha256:[0-9a-f]*\)",\{0,1\}$/\1/p' "$report")"
if [[ -z "$digest" ]]; then
  echo "error: no manifest_digest in $report" >&2
  exit 1
fi
echo "pushed $IMAGE ($digest)"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  {
    echo "digest=$digest"
    echo "image=$IMAGE"
  } >>"$GITHUB_OUTPUT"
fi
