#!/bin/sh
echo "api starting on $PORT"
