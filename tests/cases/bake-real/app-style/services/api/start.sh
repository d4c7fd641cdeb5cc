#!/bin/sh
echo "api up"
