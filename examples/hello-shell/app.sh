#!/bin/sh
# A tiny app: the example shell buildpack runs it as the image's default process.
echo "${GREETING:-Hi} from kiln! I run as uid $(id -u) in $(pwd) with args: $*"
