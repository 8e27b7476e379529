"""The project file: the TOML file read and written (tomlkit + cattrs), converted and checked."""
