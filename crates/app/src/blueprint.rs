//! The five built-in template sets, one per seed document: which directories the tree has
//! (with owners and modes), which files are rendered into it, which databases are backed up
//! and how often. The templates themselves live in `templates/<set>/` beside this crate.

use serde::Serialize;

/// Who owns a directory or file of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSpec {
    /// The app's owner and group (`app.owner`, default the deploy user).
    App,
    /// `root:root`.
    Root,
    /// `root` and the app's group: readable by the group, writable by root only.
    RootWithAppGroup,
    /// A numeric uid (and the same gid) taken from an integer setting, e.g. `postgres_uid`:
    /// the user the database image runs as, so its entrypoint does not re-own the directory
    /// on every start (which would make the next run change it back).
    Setting(&'static str),
}

/// A directory of the tree, relative to the app directory (`""` is the app directory).
#[derive(Debug, Clone, Copy)]
pub struct DirectorySpec {
    pub path: &'static str,
    pub mode: u32,
    pub owner: OwnerSpec,
}

/// How a rendered file is checked on the host before it replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `docker compose config -q` when docker compose is installed.
    Compose,
    /// `nginx -t` on a copy whose certificate paths point at the app's `ssl/`, when nginx is
    /// installed on the host.
    Nginx,
}

/// A template rendered into the app directory.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// Template name (also the name of the override file in `template_dir`).
    pub template: &'static str,
    /// Built-in template source.
    pub source: &'static str,
    /// Destination, relative to the app directory.
    pub path: &'static str,
    pub mode: u32,
    pub owner: OwnerSpec,
    pub check: Option<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    Postgres,
    Mongo,
    Redis,
}

/// A database service of the compose file that the backup script dumps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Database {
    pub kind: DatabaseKind,
    /// Compose service name.
    pub service: &'static str,
}

/// One template set.
#[derive(Debug, Clone, Copy)]
pub struct Blueprint {
    pub name: &'static str,
    /// The seed document it follows.
    pub seed: &'static str,
    /// Default template variables (TOML), overridden by `app.settings`.
    pub settings: &'static str,
    pub directories: &'static [DirectorySpec],
    pub files: &'static [FileSpec],
    /// The `.env` template.
    pub env: &'static str,
    pub databases: &'static [Database],
    /// Runs application code under PM2 on the host: renders `ecosystem.config.js` and a
    /// `<name>-pm2.service` unit.
    pub pm2: bool,
    /// systemd `OnCalendar=` of the backup timer.
    pub backup_schedule: &'static str,
    pub backup_retention_days: u32,
    /// Files of the app directory archived with every backup (besides the dumps).
    pub backup_config_files: &'static [&'static str],
}

/// Common templates, used by every set that needs them.
pub mod common {
    pub(crate) const BACKUP_SCRIPT: &str = include_str!("../templates/common/backup.sh");
    pub(crate) const BACKUP_SERVICE: &str = include_str!("../templates/common/backup.service");
    pub(crate) const BACKUP_TIMER: &str = include_str!("../templates/common/backup.timer");
    pub(crate) const PM2_SERVICE: &str = include_str!("../templates/common/pm2.service");
}

const fn dir(path: &'static str, mode: u32, owner: OwnerSpec) -> DirectorySpec {
    DirectorySpec { path, mode, owner }
}

/// The directories every set has: seeds/002 §4.1 (`nginx`, `ssl`, `data`, `logs/{nginx,app}`).
/// Data directories of the database services are added per set.
const BASE: [DirectorySpec; 7] = [
    dir("", 0o750, OwnerSpec::App),
    dir("nginx", 0o750, OwnerSpec::App),
    dir("ssl", 0o750, OwnerSpec::RootWithAppGroup),
    dir("data", 0o750, OwnerSpec::App),
    dir("logs", 0o755, OwnerSpec::App),
    // Written by the nginx container's master process (root).
    dir("logs/nginx", 0o755, OwnerSpec::Root),
    dir("logs/app", 0o755, OwnerSpec::App),
];

const fn compose(source: &'static str) -> FileSpec {
    FileSpec {
        template: "docker-compose.yml",
        source,
        path: "docker-compose.yml",
        mode: 0o640,
        owner: OwnerSpec::App,
        check: Some(Check::Compose),
    }
}

const fn nginx(source: &'static str) -> FileSpec {
    FileSpec {
        template: "nginx.conf",
        source,
        path: "nginx/nginx.conf",
        mode: 0o640,
        owner: OwnerSpec::App,
        check: Some(Check::Nginx),
    }
}

const fn ecosystem(source: &'static str) -> FileSpec {
    FileSpec {
        template: "ecosystem.config.js",
        source,
        path: "ecosystem.config.js",
        mode: 0o644,
        owner: OwnerSpec::App,
        check: None,
    }
}

const fn postgres(service: &'static str) -> Database {
    Database {
        kind: DatabaseKind::Postgres,
        service,
    }
}

const fn mongo(service: &'static str) -> Database {
    Database {
        kind: DatabaseKind::Mongo,
        service,
    }
}

const fn redis(service: &'static str) -> Database {
    Database {
        kind: DatabaseKind::Redis,
        service,
    }
}

const DAILY_2AM: &str = "*-*-* 02:00:00";

/// seeds/000: NestJS API + worker under PM2, PostgreSQL, Redis, nginx; daily pg_dump at
/// 02:00 kept 7 days (the seed's backup-db.sh and crontab).
pub(crate) const LULAB_BACKEND: Blueprint = Blueprint {
    name: "lulab-backend",
    seed: "seeds/000",
    settings: include_str!("../templates/lulab-backend/settings.toml"),
    directories: &[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        dir("data/postgres", 0o700, OwnerSpec::Setting("postgres_uid")),
        dir("data/redis", 0o700, OwnerSpec::Setting("redis_uid")),
        BASE[4],
        BASE[5],
        BASE[6],
        // The application checkout PM2 runs from.
        dir("app", 0o755, OwnerSpec::App),
    ],
    files: &[
        compose(include_str!(
            "../templates/lulab-backend/docker-compose.yml"
        )),
        nginx(include_str!("../templates/lulab-backend/nginx.conf")),
        ecosystem(include_str!(
            "../templates/lulab-backend/ecosystem.config.js"
        )),
    ],
    env: include_str!("../templates/lulab-backend/env"),
    databases: &[postgres("postgres")],
    pm2: true,
    backup_schedule: DAILY_2AM,
    backup_retention_days: 7,
    backup_config_files: &[],
};

/// seeds/001: API + two Dramatiq worker queues, PostgreSQL, Redis, all in containers. The
/// seed names no schedule: daily at 02:00, kept 7 days, like seeds/000.
pub(crate) const BACKEND2: Blueprint = Blueprint {
    name: "backend2",
    seed: "seeds/001",
    settings: include_str!("../templates/backend2/settings.toml"),
    directories: &[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        dir("data/postgres", 0o700, OwnerSpec::Setting("postgres_uid")),
        dir("data/redis", 0o700, OwnerSpec::Setting("redis_uid")),
        BASE[4],
        BASE[5],
        BASE[6],
    ],
    files: &[
        compose(include_str!("../templates/backend2/docker-compose.yml")),
        nginx(include_str!("../templates/backend2/nginx.conf")),
    ],
    env: include_str!("../templates/backend2/env"),
    databases: &[postgres("postgres")],
    pm2: false,
    backup_schedule: DAILY_2AM,
    backup_retention_days: 7,
    backup_config_files: &[],
};

/// seeds/002: postgres, redis, minio, api, web, nginx with TLS; daily backup at 02:00 of
/// the database and the configuration, kept 30 days (§8.3).
pub(crate) const AI_MEETING: Blueprint = Blueprint {
    name: "ai-meeting",
    seed: "seeds/002",
    settings: include_str!("../templates/ai-meeting/settings.toml"),
    directories: &[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        dir("data/postgres", 0o700, OwnerSpec::Setting("postgres_uid")),
        dir("data/redis", 0o700, OwnerSpec::Setting("redis_uid")),
        dir("data/minio", 0o700, OwnerSpec::Setting("minio_uid")),
        BASE[4],
        BASE[5],
        BASE[6],
    ],
    files: &[
        compose(include_str!("../templates/ai-meeting/docker-compose.yml")),
        nginx(include_str!("../templates/ai-meeting/nginx.conf")),
        FileSpec {
            template: "init-db.sql",
            source: include_str!("../templates/ai-meeting/init-db.sql"),
            path: "init-db.sql",
            // Read by the postgres user of the container.
            mode: 0o644,
            owner: OwnerSpec::App,
            check: None,
        },
    ],
    env: include_str!("../templates/ai-meeting/env"),
    databases: &[postgres("postgres")],
    pm2: false,
    backup_schedule: DAILY_2AM,
    backup_retention_days: 30,
    backup_config_files: &[".env", "docker-compose.yml", "nginx"],
};

/// seeds/003: Vue front end served by nginx, Node back end under PM2, MongoDB; daily
/// mongodump at 02:00 (setup_cron_backup.sh daily), kept 7 days.
pub(crate) const VUE_NODE_PM2: Blueprint = Blueprint {
    name: "vue-node-pm2",
    seed: "seeds/003",
    settings: include_str!("../templates/vue-node-pm2/settings.toml"),
    directories: &[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        dir("data/mongo", 0o700, OwnerSpec::Setting("mongo_uid")),
        BASE[4],
        BASE[5],
        BASE[6],
        dir("app", 0o755, OwnerSpec::App),
    ],
    files: &[
        compose(include_str!("../templates/vue-node-pm2/docker-compose.yml")),
        nginx(include_str!("../templates/vue-node-pm2/nginx.conf")),
        ecosystem(include_str!(
            "../templates/vue-node-pm2/ecosystem.config.js"
        )),
    ],
    env: include_str!("../templates/vue-node-pm2/env"),
    databases: &[mongo("mongo")],
    pm2: true,
    backup_schedule: DAILY_2AM,
    backup_retention_days: 7,
    backup_config_files: &[],
};

/// seeds/004: api, dashboard, mongo, redis; daily mongodump and Redis snapshot (§8.1) at
/// 02:00, kept 7 days (the seed ships them to S3 and names no retention).
pub(crate) const MONITOR_SAAS: Blueprint = Blueprint {
    name: "monitor-saas",
    seed: "seeds/004",
    settings: include_str!("../templates/monitor-saas/settings.toml"),
    directories: &[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        dir("data/mongo", 0o700, OwnerSpec::Setting("mongo_uid")),
        dir("data/redis", 0o700, OwnerSpec::Setting("redis_uid")),
        BASE[4],
        BASE[5],
        BASE[6],
    ],
    files: &[
        compose(include_str!("../templates/monitor-saas/docker-compose.yml")),
        nginx(include_str!("../templates/monitor-saas/nginx.conf")),
    ],
    env: include_str!("../templates/monitor-saas/env"),
    databases: &[mongo("mongo"), redis("redis")],
    pm2: false,
    backup_schedule: DAILY_2AM,
    backup_retention_days: 7,
    backup_config_files: &[],
};

/// Every built-in set.
pub const ALL: [&Blueprint; 5] = [
    &LULAB_BACKEND,
    &BACKEND2,
    &AI_MEETING,
    &VUE_NODE_PM2,
    &MONITOR_SAAS,
];

/// The built-in set called `name`.
pub fn find(name: &str) -> Option<&'static Blueprint> {
    ALL.into_iter().find(|b| b.name == name)
}

/// Names of the built-in sets, for messages.
pub fn names() -> String {
    ALL.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}
