#!/bin/sh
echo "worker up"
