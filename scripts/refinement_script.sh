#!/usr/bin/env bash
# The refinement stage and the export, after the steps are done (resumes them if not):
# --gpu G --ratio R [--steps N]; the same command as all_steps_script.sh, kept for ALPI's users.
exec "$(dirname "$0")/all_steps_script.sh" "$@"
