#!/bin/sh
echo "web starting on $PORT"
