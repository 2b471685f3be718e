# Sourced by scripts/test, scripts/demo and .ci/run: make sure .venv exists with
# Python >= 3.12 and the project installed (editable, with the dev extra).
# Settings: TASKS_PYTHON (a python to use), TASKS_VENV (default: .venv),
# TASKS_EXTRAS (default: dev; "dev,mysql" adds the MariaDB/MySQL driver).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKS_VENV:-$ROOT/.venv}"
EXTRAS="${TASKS_EXTRAS:-dev}"
case "${DATABASE_URL:-}" in mysql*) [[ ",$EXTRAS," == *",mysql,"* ]] || EXTRAS="$EXTRAS,mysql" ;; esac

_is_py312() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }

_find_python() {
  local candidate
  for candidate in "${TASKS_PYTHON:-}" python3.14 python3.13 python3.12 python3; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && _is_py312 "$candidate" \
      && { command -v "$candidate"; return; }
  done
  # pyenv installs that are not on PATH (the .python-version file asks for 3.12).
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python; do
    [ -x "$candidate" ] && _is_py312 "$candidate" && { echo "$candidate"; return; }
  done
  echo "No Python >= 3.12 found: install one or set TASKS_PYTHON." >&2
  return 1
}

_ensure_mysql_headers() {
  # mysqlclient compiles against libmariadb; Debian ships the headers in libmariadb-dev.
  command -v mariadb_config >/dev/null 2>&1 || command -v mysql_config >/dev/null 2>&1 \
    || pkg-config --exists mariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null \
    && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing libmariadb-dev and pkg-config (needed to build mysqlclient)..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq libmariadb-dev pkg-config >/dev/null
  else
    echo "mysqlclient needs the MariaDB client headers: apt-get install libmariadb-dev pkg-config" >&2
    return 1
  fi
}

# The distribution was called django_tasks_db, the name of another project on the
# package index: drop that install (it has the same import name) from older venvs.
_drop_old_distribution() {
  "$VENV/bin/python" -m pip show django_tasks_db >/dev/null 2>&1 || return 0
  "$VENV/bin/python" -m pip uninstall --disable-pip-version-check -y django_tasks_db
}

_bootstrap() {
  if [ ! -x "$VENV/bin/python" ] || ! _is_py312 "$VENV/bin/python"; then
    local python
    python="$(_find_python)" || return 1
    echo "Creating $VENV with $("$python" --version)..." >&2
    "$python" -m venv "$VENV" || return 1
  fi
  local stamp="$VENV/.installed-${EXTRAS//,/-}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    [[ ",$EXTRAS," == *",mysql,"* ]] && { _ensure_mysql_headers || return 1; }
    echo "Installing django-tasks-dbqueue[$EXTRAS] into $VENV (log: $VENV/pip.log)..." >&2
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[$EXTRAS]" \
           && _drop_old_distribution
         } >"$VENV/pip.log" 2>&1; then
      tail -n 30 "$VENV/pip.log" >&2
      return 1
    fi
    touch "$stamp"
  fi
  PY="$VENV/bin/python"
}

_bootstrap || { echo "bootstrap failed" >&2; exit 1; }
