#!/bin/bash
# {{ app.name | oneline }} backups: managed by provision. Run by {{ app.name | oneline }}-backup.timer
# ({{ backup.schedule | oneline }}); output goes to {{ backup.log | oneline }}.
# Dumps older than {{ backup.retention_days }} days are deleted.
set -euo pipefail
umask 077

app_name={{ app.name | shell }}
app_dir={{ app.dir | shell }}
backup_dir={{ backup.dir | shell }}
stamp=$(date +%Y%m%d_%H%M%S)
failed=0

log() { echo "$(date '+%F %T') $*"; }

if docker compose version >/dev/null 2>&1; then
    compose() { docker compose -f "$app_dir/docker-compose.yml" "$@"; }
elif command -v docker-compose >/dev/null 2>&1; then
    compose() { docker-compose -f "$app_dir/docker-compose.yml" "$@"; }
else
    log "FAILED: neither docker compose nor docker-compose is installed"
    exit 1
fi

# dump NAME COMMAND...: gzip COMMAND's output into $backup_dir/$stamp-NAME; a failed dump
# leaves no file behind.
dump() {
    local out="$backup_dir/$stamp-$1"
    shift
    if "$@" | gzip > "$out.part"; then
        mv -- "$out.part" "$out"
        log "wrote $out ($(stat -c %s -- "$out") bytes)"
    else
        rm -f -- "$out.part"
        log "FAILED: $out"
        failed=1
    fi
}

mkdir -p -- "$backup_dir"
cd -- "$app_dir"
log "backup of $app_name started"
{% for db in databases %}
{% if db.kind == "postgres" %}
dump {{ (db.service ~ ".sql.gz") | shell }} compose exec -T {{ db.service | shell }} sh -c 'pg_dump -U "$POSTGRES_USER" "$POSTGRES_DB"'
{% elif db.kind == "mongo" %}
dump {{ (db.service ~ ".archive.gz") | shell }} compose exec -T {{ db.service | shell }} sh -c 'mongodump --quiet --archive -u "$MONGO_INITDB_ROOT_USERNAME" -p "$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin'
{% elif db.kind == "redis" %}
dump {{ (db.service ~ ".rdb.gz") | shell }} compose exec -T {{ db.service | shell }} sh -c 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning --rdb - 2>/dev/null'
{% endif %}
{% endfor %}
{% if backup.config_files %}
if tar -czf "$backup_dir/$stamp-config.tar.gz.part" -- {{ backup.config_files | map("shell") | join(" ") }}; then
    mv -- "$backup_dir/$stamp-config.tar.gz.part" "$backup_dir/$stamp-config.tar.gz"
    log "wrote $backup_dir/$stamp-config.tar.gz"
else
    rm -f -- "$backup_dir/$stamp-config.tar.gz.part"
    log "FAILED: $backup_dir/$stamp-config.tar.gz"
    failed=1
fi
{% endif %}

find "$backup_dir" -maxdepth 1 -type f -name '*.gz' -mtime +{{ backup.retention_days }} -print -delete | while read -r old; do log "deleted $old"; done

if [ "$failed" -ne 0 ]; then
    log "backup of $app_name FAILED"
    exit 1
fi
log "backup of $app_name done"
