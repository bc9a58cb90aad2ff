# Sourced by scripts/demo and scripts/test: one place that builds the venv and the project-local
# Airflow environment, so both commands set up exactly the same way on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv ($("$PY" --version))"
  "$PY" -m venv .venv
fi
# Reinstall only when requirements.txt or pyproject.toml changed since the last install.
STAMP=.venv/.lastmile-installed
WANT="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "== installing pinned requirements into .venv (first time: about a minute)"
  # (this machine's pip config names local mirrors that may be absent; hide only that noise)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e . \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
# The customer e-mail catalogs: compile each .po whose .mo is missing or older (docs/translations.md).
# The .mo files are build artefacts, not in git; a process that finds none compiles the .po in memory.
for PO in include/lastmile/email/locale/*/LC_MESSAGES/messages.po; do
  MO="${PO%.po}.mo"
  if [ ! -e "$MO" ] || [ "$PO" -nt "$MO" ]; then
    LANG_DIR="${PO%/LC_MESSAGES/messages.po}"
    pybabel --quiet compile -i "$PO" -o "$MO" -l "${LANG_DIR##*/}" -D messages
  fi
done
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export LASTMILE_OUT_DIR="${LASTMILE_OUT_DIR:-$ROOT/out}"
mkdir -p "$AIRFLOW_HOME" "$LASTMILE_OUT_DIR"
