#!/bin/sh
# The essentials of the official nginx image's /docker-entrypoint.sh:
# - when the command is nginx, run /docker-entrypoint.d/*.sh (executable ones) first;
# - render /etc/nginx/templates/*.template into /etc/nginx/conf.d/ with envsubst
#   (only variables that are set in the environment are substituted, as upstream does).
set -e

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
    suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
    output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
    if [ -d "$template_dir" ] && command -v envsubst >/dev/null; then
        # shellcheck disable=SC2016,SC2046  # literal ${NAME} list for envsubst
        defined_envs=$(printf '${%s} ' $(env | cut -d= -f1))
        for template in "$template_dir"/*"$suffix"; do
            [ -f "$template" ] || continue
            output_path="$output_dir/$(basename "$template" "$suffix")"
            echo "$0: rendering $template -> $output_path"
            envsubst "$defined_envs" < "$template" > "$output_path"
        done
    fi
    for f in /docker-entrypoint.d/*.sh; do
        [ -f "$f" ] && [ -x "$f" ] || continue
        echo "$0: running $f"
        "$f"
    done
fi

exec "$@"
