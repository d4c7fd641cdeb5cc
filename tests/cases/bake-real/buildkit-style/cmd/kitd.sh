#!/bin/sh
echo kitd
