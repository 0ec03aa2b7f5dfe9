-- {{ app.name }}: managed by provision (seeds/002 §6). Runs once, when the database is created.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

-- Tables are created by the application; this only sets the basics. The seed's
-- `SET timezone` lasted for this session only; ALTER DATABASE keeps it.
ALTER DATABASE "{{ settings.db_name }}" SET timezone TO '{{ timezone }}';
