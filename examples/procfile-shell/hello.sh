#!/bin/sh
# Prints a greeting (and, with --report, what the container looks like) and exits.
echo "Hello from a Procfile app, built by kiln!"
if [ "${1:-}" = "--report" ]; then
  echo "user $(id -u), in $(pwd), on $(uname -m)"
fi
