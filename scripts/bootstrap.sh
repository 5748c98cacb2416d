#!/usr/bin/env bash
# Prepare this machine for `make deploy` / `make test`: a venv from the requirement files and,
# when running as root on Debian, the system packages that are missing.
# Usage: scripts/bootstrap.sh test | scripts/bootstrap.sh deploy [ENV]
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-deploy}
environment=${2:-dev}
venv=${VENV:-.venv}

apt_packages=()
need() {  # need COMMAND PACKAGE: queue PACKAGE when COMMAND is missing
  command -v "$1" >/dev/null 2>&1 || apt_packages+=("$2")
}
if [ "$purpose" = test ]; then
  need /usr/lib/rabbitmq/bin/rabbitmq-server rabbitmq-server
  need dockerd docker.io
  need debootstrap debootstrap
  need docker-registry docker-registry
  need openssl openssl
  need promtool prometheus         # promtool check/test rules of the alerts; the server draws the dashboard
  need chromium chromium           # the page's browser test (driven by playwright, no browser download)
  need wrk wrk                     # the HTTP benchmark
  need ip iproute2                 # network namespaces of the chaos test
  need iptables iptables
elif [ "$environment" = local ] || [ "$environment" = dev ]; then
  # Both run on this machine's Docker: the local target directly, minikube through its docker driver.
  need dockerd docker.io
  case "${JOBSTACK_OFFLINE_BASES:-false}" in 1|true|True|yes|on) need debootstrap debootstrap ;; esac
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian packages: ${apt_packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  else
    echo "bootstrap: missing ${apt_packages[*]}; install them (needs root on Debian)" >&2
    exit 1
  fi
fi

reqs=requirements.txt
[ "$purpose" = test ] && reqs=requirements-test.txt
stamp="$venv/.installed-$purpose"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstall only when a requirement file changed since the last install.
if [ ! -f "$stamp" ] || [ -n "$(find requirements*.txt services/*/requirements.txt -newer "$stamp" 2>/dev/null)" ]; then
  # This machine's pip configuration lists local wheel folders that may not exist; hide that noise.
  "$venv/bin/pip" install -q --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
  "$venv/bin/pip" install -q -r "$reqs" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  touch "$stamp"
fi
"$venv/bin/ansible-galaxy" collection install -r requirements.yml >/dev/null
