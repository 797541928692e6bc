#!/bin/sh
# Answer on SSH, VNC, RDP, noVNC, code-server, Jupyter and TensorBoard ports; exit on SIGTERM.
mkdir -p /www && echo "berth test workspace for $BERTH_USER" > /www/index.html
for port in 22 5901 3389 6080 8443 8888 6006; do httpd -p "$port" -h /www; done
trap 'exit 0' TERM INT
while :; do sleep 1 & wait $!; done
