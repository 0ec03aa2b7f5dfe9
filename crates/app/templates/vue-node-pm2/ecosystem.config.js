// {{ app.name }}: managed by provision (seeds/003, backend/ecosystem.config.js).
// {{ app.name }}-pm2.service runs this with the variables of {{ app.dir }}/.env.
module.exports = {
  apps: [
    {
      name: 'backend-prod',
      cwd: '{{ app.dir }}/{{ settings.backend_dir }}',
      script: 'dist/main.js',
      env: {
        NODE_ENV: '{{ settings.node_env }}',
        PORT: {{ settings.backend_port }}
      },
      max_memory_restart: '{{ settings.max_memory_restart }}',
      log_date_format: 'YYYY-MM-DD HH:mm:ss',
      error_file: '{{ app.dir }}/logs/app/backend-prod-error.log',
      out_file: '{{ app.dir }}/logs/app/backend-prod-out.log',
      merge_logs: true,
      instances: 1,
      exec_mode: 'fork'
    }
  ]
};
