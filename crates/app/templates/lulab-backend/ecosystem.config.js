// {{ app.name }}: managed by provision (seeds/000). The code is checked out in
// {{ app.dir }}/app; {{ app.name }}-pm2.service runs these apps with the variables of .env.
module.exports = {
  apps: [
    {
      name: '{{ app.name }}-api',
      cwd: '{{ app.dir }}/app',
      script: 'dist/main.js',
      instances: '{{ settings.api_instances }}',
      exec_mode: 'cluster',
      env: {
        NODE_ENV: '{{ settings.node_env }}',
        PORT: {{ settings.port }}
      },
      error_file: '{{ app.dir }}/logs/app/err.log',
      out_file: '{{ app.dir }}/logs/app/out.log',
      log_file: '{{ app.dir }}/logs/app/combined.log',
      time: true,
      max_memory_restart: '{{ settings.max_memory_restart }}',
      node_args: '{{ settings.node_args }}'
    },
    {
      name: '{{ app.name }}-worker',
      cwd: '{{ app.dir }}/app',
      script: 'dist/worker.js',
      instances: {{ settings.worker_instances }},
      exec_mode: 'cluster',
      env: {
        NODE_ENV: '{{ settings.node_env }}'
      },
      error_file: '{{ app.dir }}/logs/app/worker-err.log',
      out_file: '{{ app.dir }}/logs/app/worker-out.log',
      log_file: '{{ app.dir }}/logs/app/worker-combined.log',
      time: true,
      max_memory_restart: '{{ settings.max_memory_restart }}',
      node_args: '{{ settings.node_args }}'
    }
  ]
};
