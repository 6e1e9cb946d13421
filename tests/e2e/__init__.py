"""End-to-end tests: the local emulator over real HTTP.

A package (this file) so that the emulator fixture is package-scoped: it stops, and the AWS
environment variables it sets are restored, before the other test directories run.
"""
