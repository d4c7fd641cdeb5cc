#!/bin/sh
echo kitctl
