@aws
runtime provided.al2023
