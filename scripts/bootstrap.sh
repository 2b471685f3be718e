# Sourced by scripts/test, scripts/demo and .ci/run: make sure .venv exists with
# Python >= 3.12 and the project installed (editable, with the dev extra).
# Settings: TASKS_PYTHON (a python to use; 3.11 is accepted, for Django 5.2),
# TASKS_VENV (default: .venv),
# TASKS_EXTRAS (default: dev; "dev,mysql" adds the MariaDB/MySQL driver),
# TASKS_DJANGO (a pip requirement that picks the Django release, e.g. "django>=5.2,<6";
# default: the newest; on 5.2 add the backport extra).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKS_VENV:-$ROOT/.venv}"
EXTRAS="${TASKS_EXTRAS:-dev}"
DJANGO_SPEC="${TASKS_DJANGO:-}"
case "${DATABASE_URL:-}" in mysql*) [[ ",$EXTRAS," == *",mysql,"* ]] || EXTRAS="$EXTRAS,mysql" ;; esac

# Python 3.12+ by default (Django 6 needs it); TASKS_PYTHON may name a 3.11 (Django 5.2).
_is_python() { "$1" -c "import sys; sys.exit(sys.version_info < (3, $2))" 2>/dev/null; }

_find_python() {
  local candidate
  if [ -n "${TASKS_PYTHON:-}" ]; then
    candidate="$(command -v "$TASKS_PYTHON")" && _is_python "$candidate" 11 \
      && { echo "$candidate"; return; }
    echo "TASKS_PYTHON=$TASKS_PYTHON is not a Python >= 3.11." >&2
    return 1
  fi
  for candidate in python3.14 python3.13 python3.12 python3; do
    command -v "$candidate" >/dev/null 2>&1 && _is_python "$candidate" 12 \
      && { command -v "$candidate"; return; }
  done
  # pyenv installs that are not on PATH (the .python-version file asks for 3.12).
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python; do
    [ -x "$candidate" ] && _is_python "$candidate" 12 && { echo "$candidate"; return; }
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
  if [ ! -x "$VENV/bin/python" ] || ! _is_python "$VENV/bin/python" 11; then
    local python
    python="$(_find_python)" || return 1
    echo "Creating $VENV with $("$python" --version)..." >&2
    "$python" -m venv "$VENV" || return 1
  fi
  local stamp="$VENV/.installed-${EXTRAS//,/-}"
  [ -n "$DJANGO_SPEC" ] && stamp="$stamp-$(printf '%s' "$DJANGO_SPEC" | tr -c 'A-Za-z0-9.' '_')"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    [[ ",$EXTRAS," == *",mysql,"* ]] && { _ensure_mysql_headers || return 1; }
    echo "Installing django-tasks-dbqueue[$EXTRAS] ${DJANGO_SPEC:+($DJANGO_SPEC) }into $VENV" \
      "(log: $VENV/pip.log)..." >&2
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[$EXTRAS]" \
             ${DJANGO_SPEC:+"$DJANGO_SPEC"} \
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
