"""German and French for the mail-program pages: setup, secret-key download, read marks
(merged into webportal.i18n.CATALOGS)."""

from __future__ import annotations

DE: dict[str, str] = {
    "(unread)": "(ungelesen)",
    "Choose a passphrase of at least {count} characters.": (
        "Wählen Sie eine Passphrase mit mindestens {count} Zeichen."
    ),
    "Code from your authenticator app": "Code aus Ihrer Authenticator-App",
    "Download the key": "Schlüssel herunterladen",
    "Download your secret key": "Geheimen Schlüssel herunterladen",
    "Encrypted mail arrives in the program encrypted: import your secret key there to read it.": (
        "Verschlüsselte E-Mails kommen verschlüsselt im Programm an: Importieren Sie dort Ihren"
        " geheimen Schlüssel, um sie zu lesen."
    ),
    "Incoming (IMAP)": "Eingang (IMAP)",
    "Mail programs show your encrypted mail once they have your secret key. Download it,"
    " locked with a passphrase you choose.": (
        "E-Mail-Programme zeigen Ihre verschlüsselten E-Mails, sobald sie Ihren geheimen"
        " Schlüssel haben. Laden Sie ihn herunter, gesichert mit einer Passphrase Ihrer Wahl."
    ),
    "Outgoing (SMTP)": "Ausgang (SMTP)",
    "Passphrase again": "Passphrase wiederholen",
    "Passphrase for the key file": "Passphrase für die Schlüsseldatei",
    "Port": "Port",
    "Profile for iPhone, iPad and Mac": "Profil für iPhone, iPad und Mac",
    "Secret key downloaded": "Geheimer Schlüssel heruntergeladen",
    "Server": "Server",
    "Set up a mail program": "E-Mail-Programm einrichten",
    "Sign-in: normal password. User name: the full address. Password: the address password,"
    " or an app password when two-factor login is on.": (
        "Anmeldung: normales Passwort. Benutzername: die vollständige Adresse. Passwort: das"
        " Adresspasswort oder, bei Zwei-Faktor-Anmeldung, ein App-Passwort."
    ),
    "The code is wrong. Enter the current code from your authenticator app.": (
        "Der Code ist falsch. Geben Sie den aktuellen Code aus Ihrer Authenticator-App ein."
    ),
    "The key is locked with a passphrase you choose now; the program asks for it when it"
    " imports the key. Anyone with the file and the passphrase can read your encrypted mail:"
    " keep both safe. We send you a mail about the download.": (
        "Der Schlüssel wird mit einer Passphrase gesichert, die Sie jetzt wählen; das Programm"
        " fragt beim Import danach. Wer Datei und Passphrase hat, kann Ihre verschlüsselten"
        " E-Mails lesen: Bewahren Sie beides sicher auf. Wir schicken Ihnen eine E-Mail über"
        " den Download."
    ),
    "The passphrase is too long.": "Die Passphrase ist zu lang.",
    "The two passphrases are not the same.": "Die beiden Passphrasen stimmen nicht überein.",
    "This address has no key yet: it gets one with its first encrypted mail.": (
        "Diese Adresse hat noch keinen Schlüssel: Sie bekommt ihn mit der ersten"
        " verschlüsselten E-Mail."
    ),
    "Thunderbird and most other programs find these settings by themselves: enter your"
    " address and its password. If a program asks, use the values below.": (
        "Thunderbird und die meisten anderen Programme finden diese Einstellungen selbst:"
        " Geben Sie Ihre Adresse und ihr Passwort ein. Fragt ein Programm nach, verwenden Sie"
        " die Werte unten."
    ),
    "Your account has no mail address yet.": "Ihr Konto hat noch keine E-Mail-Adresse.",
    "Your addresses": "Ihre Adressen",
    "Your encrypted mail reaches mail programs as it is stored: encrypted. To read it in"
    " Thunderbird, gpg or OpenKeychain, import your secret key there.": (
        "Ihre verschlüsselten E-Mails erreichen E-Mail-Programme so, wie sie gespeichert sind:"
        " verschlüsselt. Um sie in Thunderbird, gpg oder OpenKeychain zu lesen, importieren"
        " Sie dort Ihren geheimen Schlüssel."
    ),
    "Your key in a mail program": "Ihr Schlüssel in einem E-Mail-Programm",
    "Delete folder": "Ordner löschen",
    "Delete this folder and its messages?": "Diesen Ordner samt seinen Nachrichten löschen?",
    "Folder name": "Ordnername",
    "New folder": "Neuer Ordner",
    "New name": "Neuer Name",
    "Rename": "Umbenennen",
    "That name cannot be used: choose another one (at most 200 characters, not one of the"
    " standard folders, no empty part between slashes).": (
        "Dieser Name geht nicht: Wählen Sie einen anderen (höchstens 200 Zeichen, keiner der"
        " Standardordner, kein leerer Teil zwischen Schrägstrichen)."
    ),
    "No more folders: an account has at most 1000, each level of a name counted."
    " Delete one first.": (
        "Keine weiteren Ordner: Ein Konto hat höchstens 1000, jede Ebene eines Namens"
        " mitgezählt. Löschen Sie zuerst einen."
    ),
    "The folder was created.": "Der Ordner wurde angelegt.",
    "The folder was deleted.": "Der Ordner wurde gelöscht.",
    "The folder was renamed.": "Der Ordner wurde umbenannt.",
}

FR: dict[str, str] = {
    "(unread)": "(non lu)",
    "Choose a passphrase of at least {count} characters.": (
        "Choisissez une phrase secrète d'au moins {count} caractères."
    ),
    "Code from your authenticator app": "Code de votre application d'authentification",
    "Download the key": "Télécharger la clé",
    "Download your secret key": "Télécharger votre clé secrète",
    "Encrypted mail arrives in the program encrypted: import your secret key there to read it.": (
        "Les messages chiffrés arrivent chiffrés dans le logiciel : importez-y votre clé"
        " secrète pour les lire."
    ),
    "Incoming (IMAP)": "Entrant (IMAP)",
    "Mail programs show your encrypted mail once they have your secret key. Download it,"
    " locked with a passphrase you choose.": (
        "Les logiciels de messagerie affichent vos messages chiffrés dès qu'ils ont votre clé"
        " secrète. Téléchargez-la, verrouillée par une phrase secrète de votre choix."
    ),
    "Outgoing (SMTP)": "Sortant (SMTP)",
    "Passphrase again": "Phrase secrète à nouveau",
    "Passphrase for the key file": "Phrase secrète du fichier de clé",
    "Port": "Port",
    "Profile for iPhone, iPad and Mac": "Profil pour iPhone, iPad et Mac",
    "Secret key downloaded": "Clé secrète téléchargée",
    "Server": "Serveur",
    "Set up a mail program": "Configurer un logiciel de messagerie",
    "Sign-in: normal password. User name: the full address. Password: the address password,"
    " or an app password when two-factor login is on.": (
        "Connexion : mot de passe normal. Nom d'utilisateur : l'adresse complète. Mot de"
        " passe : le mot de passe de l'adresse, ou un mot de passe d'application si la"
        " connexion à deux facteurs est activée."
    ),
    "The code is wrong. Enter the current code from your authenticator app.": (
        "Le code est faux. Saisissez le code actuel de votre application d'authentification."
    ),
    "The key is locked with a passphrase you choose now; the program asks for it when it"
    " imports the key. Anyone with the file and the passphrase can read your encrypted mail:"
    " keep both safe. We send you a mail about the download.": (
        "La clé est verrouillée par une phrase secrète que vous choisissez maintenant ; le"
        " logiciel la demande à l'import. Quiconque a le fichier et la phrase secrète peut"
        " lire vos messages chiffrés : gardez les deux en sûreté. Nous vous envoyons un"
        " message au sujet du téléchargement."
    ),
    "The passphrase is too long.": "La phrase secrète est trop longue.",
    "The two passphrases are not the same.": "Les deux phrases secrètes ne sont pas identiques.",
    "This address has no key yet: it gets one with its first encrypted mail.": (
        "Cette adresse n'a pas encore de clé : elle en reçoit une avec son premier message chiffré."
    ),
    "Thunderbird and most other programs find these settings by themselves: enter your"
    " address and its password. If a program asks, use the values below.": (
        "Thunderbird et la plupart des autres logiciels trouvent ces réglages eux-mêmes :"
        " saisissez votre adresse et son mot de passe. Si un logiciel les demande, utilisez"
        " les valeurs ci-dessous."
    ),
    "Your account has no mail address yet.": "Votre compte n'a pas encore d'adresse.",
    "Your addresses": "Vos adresses",
    "Your encrypted mail reaches mail programs as it is stored: encrypted. To read it in"
    " Thunderbird, gpg or OpenKeychain, import your secret key there.": (
        "Vos messages chiffrés arrivent dans les logiciels tels qu'ils sont stockés :"
        " chiffrés. Pour les lire dans Thunderbird, gpg ou OpenKeychain, importez-y votre clé"
        " secrète."
    ),
    "Your key in a mail program": "Votre clé dans un logiciel de messagerie",
    "Delete folder": "Supprimer le dossier",
    "Delete this folder and its messages?": "Supprimer ce dossier et ses messages ?",
    "Folder name": "Nom du dossier",
    "New folder": "Nouveau dossier",
    "New name": "Nouveau nom",
    "Rename": "Renommer",
    "That name cannot be used: choose another one (at most 200 characters, not one of the"
    " standard folders, no empty part between slashes).": (
        "Ce nom ne convient pas : choisissez-en un autre (200 caractères au plus, pas un des"
        " dossiers standard, pas de partie vide entre des barres obliques)."
    ),
    "No more folders: an account has at most 1000, each level of a name counted."
    " Delete one first.": (
        "Plus de nouveaux dossiers : un compte en a 1000 au plus, chaque niveau d'un nom"
        " compté. Supprimez-en un d'abord."
    ),
    "The folder was created.": "Le dossier a été créé.",
    "The folder was deleted.": "Le dossier a été supprimé.",
    "The folder was renamed.": "Le dossier a été renommé.",
}
