#!/bin/sh
echo "worker starting on $PORT"
