#!/bin/sh
echo tool v2
