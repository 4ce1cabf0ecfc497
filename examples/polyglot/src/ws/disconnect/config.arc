@aws
runtime ruby3.3
